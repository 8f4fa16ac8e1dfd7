"""The training core on several processes: `recsys-nb run TASK --nproc 2` (gloo, CPU) gives the metrics of one process
at the same global batch, for cmn, seqrec and ner; `--nproc` is refused where a task trains on one process."""
import json
import pytest
from recsys_nb.core import load_json
from recsys_nb.data import make_synthetic
from recsys_nb.runner import run_task
from recsys_nb.registry import load_registry
from recsys_nb.cli import build_parser

# Tolerance of "the same metrics": dropout off, SASRec (no random masking), so one and two processes differ only by the
# order of float sums (the gradient all-reduce, per-process batches); losses agree to 1e-4 relative, ranking metrics to 0.01.
LOSS_RTOL, METRIC_ATOL = 1e-4, 0.01

SEQ = {'source': 'ml-100k', 'models': 'sasrec', 'epochs': 2, 'batch_size': 128, 'hidden_size': 16, 'n_positions': 20,
       'dropout': 0.0, 'max_val_users': 100, 'n_folds': 4, 'num_threads': 2, 'lr': 0.003}

def _close(a:float, b:float, rtol:float=0, atol:float=0): return abs(a - b) <= atol + rtol * abs(b)

def test_seqrec_two_processes_match_one(out):
    one = run_task('seqrec', folds=[0], params=SEQ, out=out/'one')
    two = run_task('seqrec', folds=[0], params=SEQ, out=out/'two', nproc=2)
    assert one.ok and two.ok, one.errors + two.errors
    m1, m2 = one.metrics[0], two.metrics[0]
    assert m2['nproc'] == 2 and m1['nproc'] == 1
    h1, h2 = m1['history']['sasrec'], m2['history']['sasrec']
    assert [h['steps'] for h in h1] == [h['steps'] for h in h2] == [8, 8]       # the same global batches
    for a, b in zip(h1, h2): assert _close(b['loss'], a['loss'], LOSS_RTOL), (a['loss'], b['loss'])
    for k in ('ndcg@10', 'recall@10', 'ndcg@100', 'mrr@100'):
        assert _close(m2['models']['sasrec'][k], m1['models']['sasrec'][k], atol=METRIC_ATOL), k
    assert m2['models']['sasrec']['ndcg@10'] > m2['models']['popularity']['ndcg@10'] * 0.5   # it did train
    assert (two.run_dir/'fold_0'/'checkpoint_sasrec'/'model.safetensors').exists()

@pytest.fixture(scope='module')
def tiny_no_dropout(tmp_path_factory):
    from recsys_nb import ner
    d = ner.make_tiny_encoder(tmp_path_factory.mktemp('tiny'), hidden_size=32, num_layers=1)
    cfg = json.loads((d/'config.json').read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (d/'config.json').write_text(json.dumps(cfg))
    return d

def test_ner_two_processes_match_one(out, tmp_path, tiny_no_dropout):
    syn = make_synthetic('ner', tmp_path/'somd', size=96, seed=3)
    p = {**load_registry()['ner']['tiny'], 'model_name': str(tiny_no_dropout), 'data_dir': str(syn), 'batch_size': 8,
         'num_threads': 2, 'case_feature': False, 'predict_test': False}
    one = run_task('ner', folds=[0], params=p, out=out/'one')
    two = run_task('ner', folds=[0], params=p, out=out/'two', nproc=2)
    assert one.ok and two.ok, one.errors + two.errors
    m1, m2 = one.metrics[0], two.metrics[0]
    for a, b in zip(m1['history'], m2['history']):
        assert _close(b['train_loss'], a['train_loss'], LOSS_RTOL) and _close(b['eval_loss'], a['eval_loss'], LOSS_RTOL), (a, b)
    for k in ('span_f1', 'token_f1'): assert _close(m2['models']['ner'][k], m1['models']['ner'][k], atol=METRIC_ATOL), k
    assert (two.run_dir/'fold_0'/'model').is_dir() and (two.run_dir/'fold_0'/'eval_result.json').exists()

def test_cmn_two_processes_match_one(out, tmp_path):
    syn = make_synthetic('cmn', tmp_path/'cmn', size=120, seed=3)
    p = {**load_registry()['cmn']['tiny'], 'data_dir': str(syn), 'npz_file': 'cmn.npz', 'trust_pickle': True,
         'pretrain_epochs': 2, 'epochs': 2, 'patience': 0, 'num_threads': 2}
    one = run_task('cmn', folds=[0], params=p, out=out/'one')
    two = run_task('cmn', folds=[0], params=p, out=out/'two', nproc=2)
    assert one.ok and two.ok, one.errors + two.errors
    m1, m2 = one.metrics[0], two.metrics[0]
    assert m2['nproc'] == 2 and m1['nproc'] == 1 and len(m1['history']) == len(m2['history']) == 2
    for a, b in zip(m1['gmf_history'] + m1['history'], m2['gmf_history'] + m2['history']):
        assert _close(b['loss'], a['loss'], LOSS_RTOL), (a['loss'], b['loss'])
    for m in ('cmn', 'gmf'):
        for k in ('hr@10', 'ndcg@10'): assert _close(m2['models'][m][k], m1['models'][m][k], atol=METRIC_ATOL), (m, k)
    assert (two.run_dir/'fold_0'/'checkpoints'/'cmn'/'state.json').exists() and (two.run_dir/'fold_0'/'gmf.safetensors').exists()

def test_nproc_only_where_declared(out):
    with pytest.raises(ValueError, match="task 'smoke' trains on one process"): run_task('smoke', nproc=2, out=out)
    with pytest.raises(ValueError, match=r"'nproc' must be \[1, inf\)"): run_task('seqrec', params={'nproc': 0}, out=out)
    assert build_parser().parse_args(['run', 'seqrec', '--nproc', '2']).nproc == 2
