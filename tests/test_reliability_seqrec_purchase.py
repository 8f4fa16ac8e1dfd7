"Issue 12, items 7 and 8 for seqrec and purchase: bad files get errors naming file and field/line at load time; data warnings"
import warnings
from pathlib import Path
import numpy as np
import polars as pl
import pyarrow as pa, pyarrow.parquet as pq
import pytest
from recsys_nb.core import load_json
from recsys_nb.data import make_synthetic
from recsys_nb.runner import run_task
from recsys_nb import seqrec as sr, purchase as pu
from recsys_nb.seqrec import HH_FILES, load_seqrec_data, prepare_loo, ratings_warnings
from recsys_nb.purchase import load_purchase_dir, check_folds, run_purchase, PurchaseData

TRAIN, TEST, VAC = HH_FILES['train'], HH_FILES['test'], HH_FILES['vacancies']

# ---------------------------------------------------------------- helpers

@pytest.fixture(scope='module')
def hh_src(tmp_path_factory): return make_synthetic('seqrec', tmp_path_factory.mktemp('hh'), size=40, seed=0)

@pytest.fixture(scope='module')
def pu_src(tmp_path_factory): return make_synthetic('purchase', tmp_path_factory.mktemp('pu'), size=40, seed=0)

def copy_dir(src:Path, dst:Path)->Path:
    dst.mkdir(parents=True)
    for f in src.iterdir(): (dst/f.name).write_bytes(f.read_bytes())
    return dst

def load_hh(d, **kw):
    "load_seqrec_data on hh.ru files, warnings recorded (returned with the data)"
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter('always')
        data, _ = load_seqrec_data('hh', d, min_item_cnt=1, min_seq_len=1, **kw)
    return data, [str(w.message) for w in rec if issubclass(w.category, UserWarning)]

def load_pu(d):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter('always')
        data = load_purchase_dir(d)
    return data, [str(w.message) for w in rec if issubclass(w.category, UserWarning)]

def has(ws, *parts): return any(all(p in w for p in parts) for w in ws)

def bad_utf8_strings(values:list[bytes])->pa.Array:
    "A parquet-able string array holding bytes that are not UTF-8 (pyarrow would refuse to build it)"
    offs = np.concatenate([[0], np.cumsum([len(v) for v in values])]).astype(np.int32)
    return pa.Array.from_buffers(pa.string(), len(values), [None, pa.py_buffer(offs.tobytes()), pa.py_buffer(b''.join(values))])

# ---------------------------------------------------------------- seqrec: parquet files (item 7)

def _zero(d, src): (d/TRAIN).write_bytes(b'')
def _cut(d, src): b = (src/TRAIN).read_bytes(); (d/TRAIN).write_bytes(b[:len(b) // 2])
def _csv(d, src): pl.read_parquet(src/TRAIN).select('user_id', 'session_id').write_csv(d/TRAIN)
def _latin1(d, src): (d/TRAIN).write_bytes('user_id;ville\nu_1;Orl\xe9ans\n'.encode('latin-1'))
def _zip(d, src): (d/TRAIN).write_bytes(b'PK\x03\x04' + bytes(60))
def _damaged(d, src):
    b = bytearray((src/TRAIN).read_bytes()); b[1000:1200] = bytes(200); (d/TRAIN).write_bytes(bytes(b))
def _not_utf8(d, src):
    t = pq.read_table(src/TRAIN); v = [s.encode() for s in t['session_id'].to_pylist()]; v[3] = b's_\xff'
    pq.write_table(t.set_column(1, 'session_id', bad_utf8_strings(v)), d/TRAIN)

@pytest.mark.parametrize('mutate,expected', [
    (_zero, f'{TRAIN}: empty file (0 bytes); expected a parquet file'),
    (_cut, f'{TRAIN}: truncated parquet file'),
    (_csv, f"{TRAIN}: not a parquet file: it holds CSV text (first line 'user_id,session_id')"),
    (_latin1, f'{TRAIN}: not a parquet file: it holds text that is not UTF-8 (byte 0xe9 on line 2)'),
    (_zip, f'{TRAIN}: not a parquet file: it holds a zip archive'),
    (_damaged, f"{TRAIN}, column '"),
    (_not_utf8, f"{TRAIN}, column 'session_id': cannot read the parquet data"),
], ids=['0-byte', 'truncated', 'csv-renamed', 'latin1-text', 'zip', 'damaged-page', 'non-utf8-strings'])
def test_seqrec_bad_parquet_named_at_load(hh_src, tmp_path, mutate, expected):
    d = copy_dir(hh_src, tmp_path/'d'); mutate(d, hh_src)
    with pytest.raises(ValueError) as ei: load_seqrec_data('hh', d, min_item_cnt=1, min_seq_len=1)
    msg = str(ei.value)
    assert expected in msg and str(d/TRAIN) in msg, msg
    assert 'ComputeError' not in msg and 'truncate_ragged_lines' not in msg

def test_seqrec_damaged_vacancies_named(hh_src, tmp_path):
    d = copy_dir(hh_src, tmp_path/'d'); (d/VAC).write_bytes((hh_src/VAC).read_bytes()[:-40])
    with pytest.raises(ValueError, match=rf'{VAC}: truncated parquet file'): load_seqrec_data('hh', d)

def test_seqrec_no_test_users_with_a_target(hh_src, tmp_path):
    "Late 'N keys cannot fill K folds' becomes a load-time error that says why"
    d = copy_dir(hh_src, tmp_path/'d')
    pl.read_parquet(hh_src/TEST).with_columns(pl.col('action_type').list.eval(pl.lit(2))).write_parquet(d/TEST)   # no applications
    with pytest.raises(ValueError, match=rf'{TEST}: no test users with a target\. Of its \d+ users, \d+ have training actions, 0 of these apply'):
        load_seqrec_data('hh', d, min_item_cnt=1, min_seq_len=1, n_folds=4)

def test_seqrec_fewer_target_users_than_folds(hh_src, tmp_path):
    with pytest.raises(ValueError, match=rf'{TEST}: only \d+ test users with a target, fewer than n_folds=500\. Of its \d+ users'):
        load_seqrec_data('hh', hh_src, min_item_cnt=1, min_seq_len=1, n_folds=500)

def test_seqrec_loo_fewer_users_than_folds():
    r = pl.DataFrame({'user_id': [1, 1, 1, 2, 2, 2], 'item_id': [1, 2, 3, 1, 2, 3], 'timestamp': [1, 2, 3, 1, 2, 3]})
    with pytest.raises(ValueError, match='only 2 users have 3 or more interactions after the filters, fewer than n_folds=4'):
        prepare_loo(r, n_folds=4)

# ---------------------------------------------------------------- seqrec: warnings (item 8)

def test_seqrec_clean_data_has_no_warnings(hh_src):
    data, shown = load_hh(hh_src)
    assert data.warnings == [] and shown == []

def test_seqrec_warnings(hh_src, tmp_path):
    d = copy_dir(hh_src, tmp_path/'d')
    tr, te = pl.read_parquet(hh_src/TRAIN), pl.read_parquet(hh_src/TEST)
    pl.concat([tr, tr.head(2)]).write_parquet(d/TRAIN)                                       # 2 sessions twice
    pl.concat([te, tr.slice(5, 1)]).write_parquet(d/TEST)                                    # a training session in test
    pl.read_parquet(hh_src/VAC).filter(pl.col('vacancy_id') != 'v_0').write_parquet(d/VAC)  # v_0 undescribed
    data, shown = load_hh(d)
    ws = data.warnings
    assert has(ws, TRAIN, "2 session_id value(s) occur in more than one row (e.g. 's_0', 's_1')"), ws
    assert has(ws, TRAIN, 'action(s) repeat an earlier one exactly'), ws
    assert has(ws, TEST, f"1 session_id value(s) also occur in {TRAIN} (e.g. 's_5')"), ws
    assert has(ws, VAC, '1 of the', "vacancy_id values in the sessions", "are missing from it (e.g. 'v_0')"), ws
    assert shown == ws                                                                       # each one shown, too

def test_seqrec_duplicated_vacancy_rows_warned(hh_src, tmp_path):
    d = copy_dir(hh_src, tmp_path/'d')
    v = pl.read_parquet(hh_src/VAC); pl.concat([v, v.head(1)]).write_parquet(d/VAC)
    data, _ = load_hh(d)
    assert has(data.warnings, VAC, "1 vacancy_id value(s) occur in more than one row (e.g. 'v_0')"), data.warnings

def test_seqrec_loo_repeated_rows_warned():
    r = pl.DataFrame({'user_id': [1, 1, 1, 1, 2, 2, 2], 'item_id': [1, 2, 3, 3, 1, 2, 3], 'timestamp': [1, 2, 3, 3, 1, 2, 3]})
    with pytest.warns(UserWarning, match='ratings: 2 rows share their user_id, item_id and timestamp'):
        d = prepare_loo(r)
    assert len(d.warnings) == 1 and ratings_warnings(r.unique(maintain_order=True)) == []

def test_seqrec_notebook_writes_warnings(hh_src, tmp_path):
    "The pipeline notebook records the data warnings under `warnings` in metrics.json"
    d = copy_dir(hh_src, tmp_path/'d')
    tr = pl.read_parquet(hh_src/TRAIN); pl.concat([tr, tr.head(1)]).write_parquet(d/TRAIN)
    p = {'source': 'hh', 'data_dir': str(d), 'models': 'sasrec', 'epochs': 1, 'max_steps': 1, 'batch_size': 16, 'hidden_size': 8,
         'n_positions': 10, 'min_item_cnt': 1, 'min_seq_len': 1, 'n_folds': 2, 'max_val_users': 5, 'submission': False}
    res = run_task('seqrec', folds=[0], params=p, out=tmp_path/'out')
    assert res.ok, res.errors
    assert has(res.metrics[0]['warnings'], TRAIN, "1 session_id value(s) occur in more than one row (e.g. 's_0')"), res.metrics[0]

# ---------------------------------------------------------------- purchase: CSV files (item 7)

@pytest.mark.parametrize('name,content,expected', [
    ('train.csv', b'', 'train.csv: empty file (0 bytes); expected a comma-separated file with a header line'),
    ('train.csv', 'parquet', 'train.csv: a parquet file, not comma-separated text'),
    ('items.csv', b'item_id\tyear\tgenres\n5000\t2001\tDrama\n5001\t2001\tCom\xe9die\n', 'items.csv, line 3: not UTF-8 text (byte 0xe9 at byte 14 of the line)'),
    ('train.csv', b'user_id,item_id,purchase\n1,2,0\n1,3,1,9\n', 'train.csv, line 3: 4 fields, but the header has 3'),
    ('test.csv', b'user_id,item_id,purchase\n', 'test.csv: no pairs (only a header): nothing to predict'),
], ids=['0-byte', 'parquet-renamed', 'non-utf8', 'extra-field', 'header-only'])
def test_purchase_bad_files_named_at_load(pu_src, tmp_path, name, content, expected):
    d = copy_dir(pu_src, tmp_path/'d')
    if content == 'parquet': pl.read_csv(pu_src/name).write_parquet(d/name)
    else: (d/name).write_bytes(content)
    with pytest.raises(ValueError) as ei: load_purchase_dir(d)
    msg = str(ei.value)
    assert expected in msg and str(d/name) in msg, msg
    assert 'truncate_ragged_lines' not in msg and 'invalid utf-8 sequence' not in msg

def test_purchase_folds_refused_before_training(pu_src, tmp_path):
    d = copy_dir(pu_src, tmp_path/'d')
    (d/'train.csv').write_text('user_id,item_id,purchase\n' + ''.join(f'{1000 + u},{5000 + i},{int(u == 0 and i < 3)}\n' for u in range(10) for i in range(10)))
    data, _ = load_pu(d)
    with pytest.raises(ValueError, match=r'train\.csv: 3 purchases \(purchase=1\) cannot fill n_folds=4 validation folds'): check_folds(data, 0, 4, 0)
    with pytest.raises(ValueError, match=r'the fit part of a fold holds only 2 purchases \(purchase=1\), fewer than cv_folds=3'): check_folds(data, 0, 3, 3)
    with pytest.raises(ValueError, match='n_folds=1: the validation part is one of n_folds >= 2'): check_folds(data, 0, 1, 0)
    with pytest.raises(ValueError, match='cannot fill n_folds=4'): run_purchase(data, n_folds=4, cv_folds=0)   # not a LightGBM error
    check_folds(data, 0, 3, 2)                                                                               # this one fits

def test_purchase_notebook_refuses_at_load(pu_src, tmp_path):
    d = copy_dir(pu_src, tmp_path/'d')
    res = run_task('purchase', folds=[0], params={'data_dir': str(d), 'cv_folds': 50, 'n_folds': 4}, out=tmp_path/'out')
    assert not res.ok and 'fewer than cv_folds=50 inner folds' in res.errors[0], res.errors
    assert not (res.folds[0].out_dir/'predictions.csv').exists()

# ---------------------------------------------------------------- purchase: warnings (item 8)

def test_purchase_clean_data_has_no_warnings(pu_src):
    data, shown = load_pu(pu_src)
    assert data.warnings == [] and shown == []

def test_purchase_warnings(pu_src, tmp_path):
    d = copy_dir(pu_src, tmp_path/'d')
    tr = pl.read_csv(pu_src/'train.csv')
    (d/'test.csv').write_text('user_id,item_id,purchase\n9001,9001,\n9002,9002,\n' + ''.join(f'{r[0]},{r[1]},\n' for r in tr.head(1).rows()))
    (d/'test_labels.csv').unlink()
    views = (pu_src/'views_programmes.csv').read_text().splitlines()
    (d/'views_programmes.csv').write_text('\n'.join(views + [views[1]]) + '\n')
    data, shown = load_pu(d)
    ws = data.warnings
    assert has(ws, 'test.csv: 2 of its 3 users (67%) are not in train.csv (e.g. 9001, 9002)'), ws
    assert has(ws, 'test.csv: 2 of its 3 items (67%) are not in train.csv'), ws
    assert has(ws, 'items.csv: 2 of the', 'are missing from it (e.g. 9001, 9002): their year and genre features are empty'), ws
    assert has(ws, f'test.csv: 1 (user_id, item_id) pairs are also in train.csv (e.g. {tuple(tr.row(0)[:2])})'), ws
    assert has(ws, 'views_programmes.csv: 1 rows repeat an earlier row exactly', f'line {len(views) + 1}'), ws
    assert shown == ws

def test_purchase_all_unseen_warns_auc_half(pu_src, tmp_path):
    "Test users and items all new, and equal year and genres: every test pair gets one probability, AUC 0.5 - said twice"
    d = copy_dir(pu_src, tmp_path/'d')
    (d/'test.csv').write_text('user_id,item_id,purchase\n9001,9001,\n9002,9002,\n9003,9001,\n')
    (d/'test_labels.csv').write_text('user_id,item_id,purchase\n9001,9001,1\n9002,9002,0\n9003,9001,0\n')
    (d/'items.csv').write_text((pu_src/'items.csv').read_text() + '9001\t\t\t\t\t\t1\tx\t2000.0\tДрамы\t\n9002\t\t\t\t\t\t1\ty\t2000.0\tДрамы\t\n')
    data, _ = load_pu(d)
    assert has(data.warnings, 'no test user and no test item is in train.csv', 'ROC AUC 0.5'), data.warnings
    run = run_purchase(data, n_folds=2, cv_folds=0, n_trees=3, top_items=20, threads=1)
    ws = run.metrics['warnings']
    assert has(ws, 'the model gives all 3 test pairs the same probability', 'ROC AUC is 0.5 by construction'), ws
    assert run.metrics['models']['lightgbm_gbt']['test_roc_auc'] == 0.5
    assert set(data.warnings) <= set(ws)

def test_purchase_notebook_writes_warnings(pu_src, tmp_path):
    d = copy_dir(pu_src, tmp_path/'d')
    views = (pu_src/'views_programmes.csv').read_text().splitlines()
    (d/'views_programmes.csv').write_text('\n'.join(views + [views[1]]) + '\n')
    res = run_task('purchase', folds=[0], params={'data_dir': str(d), 'cv_folds': 0, 'top_items': 20}, out=tmp_path/'out')
    assert res.ok, res.errors
    assert has(load_json(res.folds[0].out_dir/'metrics.json')['warnings'], 'views_programmes.csv: 1 rows repeat an earlier row exactly'), res.metrics[0]

# ---------------------------------------------------------------- no pickle

def test_no_pickle_loading_in_these_tasks():
    "seqrec and purchase read parquet, CSV, JSON and safetensors only: no np.load / torch.load / pickle that could run code"
    for mod in (sr, pu):
        src = Path(mod.__file__).read_text()
        for bad in ('np.load(', 'allow_pickle=True', 'torch.load(', 'import pickle', 'pickle.load'):
            assert bad not in src, (mod.__name__, bad)
