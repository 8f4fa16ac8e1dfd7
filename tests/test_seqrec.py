"seqrec: the pipeline notebook through the runner (synthetic hh.ru files, MovieLens leave-one-out), real-data conversion, bad input"
import numpy as np
import polars as pl
import pytest
from recsys_nb.core import load_json
from recsys_nb.data import make_synthetic, load_movielens
from recsys_nb.runner import run_task
from recsys_nb.registry import load_registry
from recsys_nb.seqrec import (HH_FILES, scan_hh, prepare_hh, movielens_to_hh, load_seqrec_model, recommend, explode_sessions)

TINY = load_registry()['seqrec']['tiny']   # the test preset of nbs/tasks/tasks.yaml
METRICS = {'recall@10', 'ndcg@10', 'recall@100', 'ndcg@100', 'mrr@100', 'hr@10'}

def test_synthetic_hh_two_folds(out, tmp_path):
    p = {**TINY, 'source': 'synthetic', 'data_dir': str(tmp_path/'syn'), 'synthetic_size': 120, 'min_item_cnt': 2, 'min_seq_len': 2, 'n_folds': 2}
    res = run_task('seqrec', folds=[0, 1], params=p, out=out)
    assert res.ok, res.errors
    m0, m1 = res.metrics[0], res.metrics[1]
    for m in (m0, m1):
        assert set(m['models']) == {'popularity', 'bert4rec', 'sasrec'}
        for name, v in m['models'].items(): assert METRICS <= set(v), name
        assert all(0 <= v['ndcg@10'] <= v['ndcg@100'] <= 1 and v['recall@10'] <= v['recall@100'] for v in m['models'].values())
        assert len(m['history']['sasrec']) == 1 and m['history']['sasrec'][0]['steps'] == 3
    # the folds split the users with a target between them
    assert m0['data']['n_test_users'] + m1['data']['n_test_users'] == m0['data']['n_target_users']
    d = res.run_dir/'fold_0'
    assert (d/'training.png').stat().st_size > 1000
    hh = scan_hh(tmp_path/'syn'/'synthetic_120_42')
    sub = pl.read_parquet(d/'submission.parquet')
    assert sub.columns == ['user_id', 'vacancy_id']
    assert sorted(sub['user_id'].to_list()) == sorted(hh['test'].select('user_id').unique().collect()['user_id'].to_list())
    n_items = m0['data']['n_items']
    assert set(sub['vacancy_id'].list.len().to_list()) == {min(100, n_items)}
    assert sub['vacancy_id'].list.n_unique().min() == min(100, n_items)      # no vacancy twice in a list
    model, vocab = load_seqrec_model(d/'checkpoint_sasrec')
    assert vocab.n_items == n_items and model.causal

def test_movielens_leave_one_out(out):
    p = {**TINY, 'source': 'ml-100k', 'models': 'sasrec', 'n_folds': 4}
    res = run_task('seqrec', folds=[2], params=p, out=out)
    assert res.ok, res.errors
    m = res.metrics[2]
    assert m['data']['n_users'] == 943 and abs(m['data']['n_test_users'] - 943 / 4) < 1
    assert set(m['models']) == {'popularity', 'sasrec'} and METRICS <= set(m['models']['sasrec'])
    # leave-one-out: a single target per user, so HR@10 and Recall@10 coincide
    assert m['models']['popularity']['hr@10'] == pytest.approx(m['models']['popularity']['recall@10'])
    assert not (res.run_dir/'fold_2'/'submission.parquet').exists()       # no competition file outside the hh.ru format

def test_movielens_as_hh_files(tmp_path):
    ratings, items = load_movielens('ml-100k')
    hh = scan_hh(movielens_to_hh(ratings, items, tmp_path/'mlhh', session_gap=3600))
    tr, te = explode_sessions(hh['train']).collect(), explode_sessions(hh['test']).collect()
    assert tr.height + te.height == ratings.height
    assert (te.group_by('user_id').agg(pl.col('session_id').n_unique())['session_id'] == 1).all()   # one test session per user
    # applies are the ratings >= 4
    n_apply = int((ratings['rating'] >= 4).sum())
    assert int((tr['action_type'] == 1).sum() + (te['action_type'] == 1).sum()) == n_apply
    # test sessions come after that user's training sessions
    last_tr = tr.group_by('user_id').agg(pl.col('action_dt').max().alias('a'))
    first_te = te.group_by('user_id').agg(pl.col('action_dt').min().alias('b'))
    assert (last_tr.join(first_te, on='user_id').select((pl.col('a') < pl.col('b')).all()).item())
    d = prepare_hh(hh['train'], hh['test'], n_positions=50, min_item_cnt=5, min_seq_len=5)
    assert d.info['n_test_users'] > 100 and all(len(t) >= 1 for t in d.test_targets)

def test_bad_files_get_clear_errors(tmp_path):
    src = make_synthetic('seqrec', tmp_path/'ok', size=30, seed=0)
    bad = tmp_path/'bad'; bad.mkdir()
    for f in HH_FILES.values(): (bad/f).write_bytes((src/f).read_bytes())
    pl.read_parquet(src/HH_FILES['train']).drop('action_dt').write_parquet(bad/HH_FILES['train'])
    with pytest.raises(ValueError, match=r"hh_recsys_train_hh.pq: missing column\(s\) \['action_dt'\]"): scan_hh(bad)
    t = pl.read_parquet(src/HH_FILES['train'])
    t.with_columns(pl.when(pl.int_range(pl.len()) == 4).then(pl.col('action_type').list.head(1)).otherwise(pl.col('action_type')).alias('action_type')
                   ).write_parquet(bad/HH_FILES['train'])
    hh = scan_hh(bad)
    with pytest.raises(ValueError, match='hh_recsys_train_hh.pq: row 4 .*list lengths differ'):
        prepare_hh(hh['train'], hh['test'], paths=(bad/HH_FILES['train'], bad/HH_FILES['test']))
    (bad/HH_FILES['test']).unlink()
    with pytest.raises(FileNotFoundError, match='hh_recsys_test_hh.pq'): scan_hh(bad)

def test_unknown_source_rejected(out):
    with pytest.raises(ValueError, match="'source' must be .*got 'netflix'"):   # refused before anything runs
        run_task('seqrec', folds=[0], params={**TINY, 'source': 'netflix'}, out=out)
    assert not (out/'seqrec').exists()
