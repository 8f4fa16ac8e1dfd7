"Tests of the purchase task: loaders, MovieLens conversion, feature maths, leakage, engine parity, papermill runs"
from pathlib import Path
import numpy as np
import polars as pl
import pytest
from recsys_nb.data import make_synthetic, load_movielens
from recsys_nb.runner import run_task
from recsys_nb.registry import load_registry
from recsys_nb.purchase import (read_pairs, read_items, load_purchase_dir, movielens_purchase_dir, feature_space, local_features,
                                split_fold, stratified_folds, run_purchase, SCALARS, spark_session, to_spark, spark_feature_space,
                                spark_features, spark_to_numpy)

@pytest.fixture(scope='module')
def syn(tmp_path_factory):
    return load_purchase_dir(make_synthetic('purchase', tmp_path_factory.mktemp('syn'), size=300, seed=1))


@pytest.fixture(scope='module')
def ml100k(tmp_path_factory):
    return load_purchase_dir(movielens_purchase_dir('ml-100k', cache=tmp_path_factory.mktemp('cache')))


# ---------------------------------------------------------------- loaders

def test_bad_inputs_name_file_line_and_column(tmp_path):
    (tmp_path/'train.csv').write_text('user_id,item_id,purchase\n1,2,0\n1,3,yes\n')
    with pytest.raises(ValueError, match=r"train.csv, line 3: column 'purchase' must be a 0/1 label, got 'yes'"): read_pairs(tmp_path/'train.csv')
    (tmp_path/'items.csv').write_text('item_id,year,genres\n2,2001,Drama\n')   # commas, not tabs
    with pytest.raises(ValueError, match=r"items.csv: missing column\(s\) \['item_id', 'year', 'genres'\]"): read_items(tmp_path/'items.csv')
    (tmp_path/'items.csv').write_text('item_id\tyear\tgenres\n2\t2001\tDrama\n2\t1999\tComedy\n')
    with pytest.raises(ValueError, match=r'items.csv, line 3: duplicate item_id \(2,\)'): read_items(tmp_path/'items.csv')
    with pytest.raises(FileNotFoundError, match=r"missing \['train.csv', 'test.csv', 'items.csv'\]"): load_purchase_dir(tmp_path/'..'/tmp_path.name/'..')


def test_lab_prefix_and_optional_views(tmp_path):
    (tmp_path/'lab10_train.csv').write_text('user_id,item_id,purchase\n1,2,0\n1,3,1\n')
    (tmp_path/'lab10_test.csv').write_text('user_id,item_id,purchase\n1,4,\n')
    (tmp_path/'lab10_items.csv').write_text('item_id\tyear\tgenres\n2\t2001.0\tDrama,Comedy\n')
    d = load_purchase_dir(tmp_path)
    assert d.views is None and not d.test_labelled and d.items['year'].to_list() == [2001]
    (tmp_path/'lab10_views_programmes.csv').write_text('user_id,item_id,ts_start,ts_end,item_type\n1,7,10,5,live\n')
    with pytest.raises(ValueError, match='line 2: ts_end 5 is before ts_start 10'): load_purchase_dir(tmp_path)


def test_movielens_conversion(ml100k):
    ratings, _ = load_movielens('ml-100k')
    both = pl.concat([ml100k.train, ml100k.test])
    assert len(both) == len(ratings) and ml100k.test_labelled
    j = both.join(ratings, on=['user_id', 'item_id'])
    assert ((j['rating'] >= 4).cast(pl.Float64) == j['purchase']).all()             # purchase = rating >= 4
    share = ml100k.test.group_by('user_id').len().join(ratings.group_by('user_id').len(), on='user_id')
    assert ((share['len'] / share['len_right']) <= 0.2).all() and len(share) == ratings['user_id'].n_unique()   # 20% of every user held out
    assert set(ml100k.items.columns) >= {'item_id', 'year', 'genres'} and ml100k.items['genres'].str.contains(',').any()


def test_synthetic_imbalance(syn):
    rate = syn.summary()['purchase_rate']
    assert 0.001 < rate < 0.004, rate                                                 # about 1 purchase in 500
    assert syn.views is not None and syn.test_labelled


# ---------------------------------------------------------------- features

def test_feature_maths_hand_computed():
    fit = pl.DataFrame({'user_id': [1, 1, 1, 2], 'item_id': [10, 11, 12, 10], 'purchase': [1.0, 1.0, 0.0, 0.0]})
    score = pl.DataFrame({'user_id': [1, 2], 'item_id': [13, 11], 'purchase': [None, None]}, schema_overrides={'purchase': pl.Float64})
    items = pl.DataFrame({'item_id': [10, 11, 12, 13], 'title': list('abcd'), 'year': [1990, 2000, None, 2010], 'genres': ['A', 'B,A', '', 'C']},
                         schema_overrides={'year': pl.Int32})
    space = feature_space(fit, items, top_items=2)
    assert space.genres == ['A', 'B', 'C'] and space.top_items == [10, 11]
    X = local_features(fit, score, items, space).toarray()
    # user 1: 2 purchases of 3 pairs; item 13 unseen; user 1 bought items 10 and 11 (both in the history)
    np.testing.assert_array_equal(X[0], [2, 0, 3, 0, 2/3, 0, 2010, 0, 0, 1, 1, 1])
    # user 2: 0 of 1; item 11: 1 of 1; genres B and A
    np.testing.assert_array_equal(X[1], [0, 1, 1, 1, 0, 1, 2000, 1, 1, 0, 0, 0])


def test_no_row_influences_its_own_features(syn):
    "Validation rows never see labels; with exclude_self a fit row's own label does not reach its own features"
    fit, val = split_fold(syn.train, fold=1, n_folds=4, seed=3)
    space = feature_space(fit, syn.items, 100)
    Xv = local_features(fit, val, syn.items, space)
    flipped = val.with_columns(purchase=1 - pl.col('purchase'))
    assert (local_features(fit, flipped, syn.items, space) != Xv).nnz == 0
    base = local_features(fit, fit, syn.items, space, exclude_self=True)
    lab = local_features(fit, fit, syn.items, space, exclude_self=False)
    for r in np.flatnonzero(fit['purchase'].to_numpy() == 1)[:3]:                    # flip one fit purchase at a time
        y = fit['purchase'].to_numpy().copy(); y[r] = 0; f2 = fit.with_columns(purchase=pl.Series(y))
        alt = local_features(f2, f2, syn.items, space, exclude_self=True)
        assert (alt[r] != base[r]).nnz == 0                                          # its own row: unchanged
        assert (alt != base).nnz > 0                                                 # other rows of its user/item: changed
        assert (lab[r] != base[r]).nnz > 0                                           # the lab's recipe does count the row itself


def test_folds_stratified(syn):
    f = stratified_folds(syn.train, 4, 0); y = syn.train['purchase'].to_numpy()
    assert np.ptp(np.bincount(f[y == 1])) <= 1 and np.ptp(np.bincount(f[y == 0])) <= 1


def test_local_model_beats_baseline(ml100k):
    r = run_purchase(ml100k, fold=0, n_folds=4, seed=0, top_items=100, cv_folds=0)
    m = r.metrics['models']
    assert m['lightgbm_gbt']['roc_auc'] > m['item_purchase_rate']['roc_auc'] + 0.02 > 0.7, m
    assert m['lightgbm_gbt']['test_roc_auc'] > 0.7 and 0 < m['lightgbm_gbt']['log_loss'] < m['item_purchase_rate']['log_loss'], m


# ---------------------------------------------------------------- Spark (slow to start: one parity test, one papermill run)

def test_engine_parity(ml100k):
    "Identical feature tables (validation rows; fit rows with leave-one-out) from both engines on MovieLens-100k users (AUC agreement: benchmarks/purchase_bench.py)"
    spark = spark_session('local[2]')
    small = ml100k.train.filter(pl.col('user_id') <= 60)
    fit, val = split_fold(small, fold=0, n_folds=4, seed=0)
    items = ml100k.items.select('item_id', 'year', 'genres')
    S = {k: to_spark(spark, v) for k, v in (('fit', fit), ('val', val), ('items', items))}
    space = spark_feature_space(S['fit'], S['items'], 50)
    assert space == feature_space(fit, ml100k.items, 50)
    for score, key, ex in ((val, 'val', False), (fit, 'fit', True)):
        keys, Xs = spark_to_numpy(spark_features(S['fit'], S[key], S['items'], space, exclude_self=ex))
        order = score.with_row_index('r').join(keys, on=['user_id', 'item_id'])['r'].to_numpy()
        assert len(order) == len(score)
        np.testing.assert_allclose(Xs, local_features(fit, score, ml100k.items, space, exclude_self=ex).toarray()[order], rtol=1e-12, atol=0)


@pytest.mark.parametrize('engine', ['local', 'spark'])
def test_pipeline_notebook(tmp_path, engine):
    "The pipeline notebook through the runner (papermill), one fold per engine, on tiny synthetic data"
    extra = ({} if engine == 'local' else
             {'cv_folds': 2, 'n_trees': 5, 'spark_master': 'local[2]', 'grid_max_depth': [2, 3], 'grid_min_instances': [3], 'grid_max_bins': [32]})
    tiny = load_registry()['purchase']['tiny']   # the test preset of nbs/tasks/tasks.yaml
    res = run_task('purchase', folds=[1], params={**tiny, 'engine': engine, **extra}, out=tmp_path)
    assert res.ok, res.errors
    m, out = res.metrics[1], res.folds[0].out_dir
    name = 'lightgbm_gbt' if engine == 'local' else 'spark_mllib_gbt'
    assert set(m['models']) == {name, 'item_purchase_rate'} and m['engine'] == engine and m['fold'] == 1
    assert 0 <= m['models'][name]['roc_auc'] <= 1 and m['models'][name]['log_loss'] > 0
    if engine == 'spark': assert 'cv_roc_auc' in m['models'][name] and m['best_params']['max_depth'] in (2, 3)
    pred = pl.read_csv(out/'predictions.csv')
    assert pred.columns == ['user_id', 'item_id', 'purchase'] and pred.equals(pred.sort('user_id', 'item_id'))
    assert pred['purchase'].is_between(0, 1).all() and (out/'roc.png').exists() and (out/'feature_importance.png').exists()


def test_pipeline_rejects_bad_engine(tmp_path):
    with pytest.raises(ValueError, match=r"'engine' must be \{local\|spark\}"):   # refused before anything runs
        run_task('purchase', folds=[0], params={'engine': 'dask', 'dataset': 'synthetic', 'synthetic_size': 30}, out=tmp_path)
