"""A fresh machine runs everything; nothing a user owns is overwritten; nonsense settings are refused (issue 12).
One module for every item of the issue: runner-side checks on the `smoke` task, resume of the torch tasks (seqrec, ner)
after Ctrl-C, and each task's loaders (errors naming file and field/line at load time, data warnings)."""
import json, os, re, signal, subprocess, sys, time, shutil, warnings
from pathlib import Path
import numpy as np
import polars as pl
import pyarrow as pa, pyarrow.parquet as pq
import pytest
from recsys_nb.core import load_json
from recsys_nb.data import make_synthetic
from recsys_nb.runner import run_task
from recsys_nb.registry import task_params, check_params, list_tasks
from recsys_nb.results import resolve_run_dir, run_status
from recsys_nb.nbtools import write_bundle, render_report
from recsys_nb import seqrec as sr, purchase as pu
from recsys_nb.seqrec import HH_FILES, load_seqrec_data, prepare_loo, ratings_warnings
from recsys_nb.purchase import load_purchase_dir, check_folds, run_purchase, PurchaseData

ROOT = Path(__file__).resolve().parent.parent

def _cli(*args, cwd=None, env=None, timeout=600):
    return subprocess.run([sys.executable, '-m', 'recsys_nb.cli', *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)

TRAIN, TEST, VAC = HH_FILES['train'], HH_FILES['test'], HH_FILES['vacancies']

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

# ------------------------------------------------------------------ 1. default data on a fresh clone

@pytest.mark.skipif(shutil.which('git') is None or not (ROOT/'.git').exists(), reason='needs a git checkout')
def test_fresh_clone_runs_retrieval_and_ner_on_default_data(tmp_path):
    "a clone in an otherwise empty folder (no sibling folders) and no RECSYS_NB_DATA runs one quick fold of retrieval and ner"
    clone = tmp_path/'fresh'/'recsys_nb'
    subprocess.run(['git', 'clone', '-q', '--no-hardlinks', str(ROOT), str(clone)], check=True)
    assert [x.name for x in clone.parent.iterdir()] == ['recsys_nb'] and (clone/'data'/'SHA256SUMS').exists()   # alone in its folder
    env = {k: v for k, v in os.environ.items() if k not in ('RECSYS_NB_DATA', 'RECSYS_NB_TASKS_DIR')}
    env['PYTHONPATH'] = str(clone); env['RECSYS_NB_KAGGLE_INPUT'] = str(tmp_path/'no-kaggle')
    import yaml
    reg = yaml.safe_load((clone/'nbs'/'tasks'/'tasks.yaml').read_text())
    for task in ('retrieval', 'ner'):
        args = ['run', task, '--fold', '0', '--out', str(tmp_path/'outputs')]
        fast = {'ner': {'epochs': 1}}.get(task, {})   # the default data is what is tested here: one ner epoch is enough
        for k, v in {**(reg[task].get('quick') or {}), **fast}.items(): args += ['-p', k, json.dumps(v) if not isinstance(v, str) else v]
        r = _cli(*args, cwd=clone, env=env, timeout=1800)
        assert r.returncode == 0, f'{task}: {r.stdout[-2000:]}\n{r.stderr[-3000:]}'
        m = json.loads(next((tmp_path/'outputs'/task).glob('*/fold_0/metrics.json')).read_text())
        assert str(clone/'data') in m['data_source'], m.get('data_source')          # the shipped copy, not anything else
        assert f"data: {m['data_source']}" in r.stdout                         # and the command line says so

# ------------------------------------------------------------------ 3. kernels run on this interpreter, quietly

def test_notebooks_run_on_this_interpreter_not_the_python3_kernelspec(tmp_path, out):
    "a machine whose `python3` kernelspec is another environment (here: one that cannot even start)"
    ks = tmp_path/'jp'/'kernels'/'python3'; ks.mkdir(parents=True)
    (ks/'kernel.json').write_text(json.dumps({'argv': ['/bin/false', '{connection_file}'], 'display_name': 'other env',
                                              'language': 'python'}))
    env = {**os.environ, 'JUPYTER_PATH': str(tmp_path/'jp')}
    r = _cli('run', 'smoke', '-p', 'n', '40', '--out', str(out), env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'without encryption' not in r.stderr and 'IPKernelApp' not in r.stderr, r.stderr[-2000:]
    assert json.loads(next(out.glob('smoke/*/run.json')).read_text())['python'] == sys.executable

def test_kernel_shutdown_sends_no_interrupt():
    "papermill shuts a kernel down once its last cell replied; jupyter_client's SIGINT before shutdown could only land in that reply"
    import asyncio
    from recsys_nb.runner import kernel_manager_class, LIVE_KERNELS
    async def go():
        km = kernel_manager_class()(kernel_name='python3'); await km.start_kernel()
        sent, orig = [], km.provisioner.send_signal
        async def record(sig): sent.append(sig); return await orig(sig)
        km.provisioner.send_signal = record
        kc = km.client(); kc.start_channels(); await kc.wait_for_ready(timeout=60)
        await kc.execute_interactive('x = 1', timeout=60); kc.stop_channels()
        await km.shutdown_kernel()
        return sent, km
    sent, km = asyncio.run(go())
    assert signal.SIGINT not in sent, sent
    assert km not in LIVE_KERNELS and not km.has_kernel              # and it did shut down

# ------------------------------------------------------------------ 4. nothing a user owns is overwritten

def test_bundle_never_replaces_an_existing_notebook(tmp_path):
    mine = tmp_path/'mine.ipynb'; mine.write_text('{"my": "work"}')
    r = _cli('bundle', 'smoke', '-o', str(mine))
    assert r.returncode == 2 and 'exists' in r.stderr and '--force' in r.stderr
    assert mine.read_text() == '{"my": "work"}'
    r = _cli('bundle', 'smoke', '-o', str(ROOT/'nbs'/'tasks'/'smoke_copy.ipynb'))
    assert r.returncode == 2 and 'source notebooks' in r.stderr and not (ROOT/'nbs'/'tasks'/'smoke_copy.ipynb').exists()

def test_report_never_replaces_a_users_files(tmp_path, out):
    assert run_task('smoke', folds=[0], params={'n': 30}, out=out).ok
    (tmp_path/'analysis.ipynb').write_text('{"my": "analysis"}')
    p = render_report(out, tmp_path/'analysis.html')                    # the executed report goes beside, never over it
    assert (tmp_path/'analysis.ipynb').read_text() == '{"my": "analysis"}' and (tmp_path/'analysis.report.ipynb').exists()
    render_report(out, p)                                                # our own report may be refreshed
    (tmp_path/'notes.html').write_text('<p>mine</p>')
    with pytest.raises(FileExistsError, match='not a recsys-nb report'): render_report(out, tmp_path/'notes.html')
    assert (tmp_path/'notes.html').read_text() == '<p>mine</p>'
    with pytest.raises(ValueError, match='source notebooks'): render_report(out, ROOT/'nbs'/'tasks'/'report.html')
    assert not (ROOT/'nbs'/'tasks'/'report.html').exists()

# ------------------------------------------------------------------ 5. resume and interrupt

def test_empty_folds_is_an_error(out):
    r = _cli('run', 'smoke', '--folds', ',', '--out', str(out))
    assert r.returncode == 2 and 'no folds given' in r.stderr
    assert not (out/'smoke').exists()                                     # no empty run, no `latest`

def test_ctrl_c_stops_parallel_folds_within_seconds_and_resume_finishes_them(out):
    p = subprocess.Popen([sys.executable, '-m', 'recsys_nb.cli', 'run', 'smoke', '--folds', '0,1,2', '--jobs', '2',
                          '-p', 'n', '40', '-p', 'sleep', '60', '--out', str(out)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,   # as in a terminal: a job started with & ignores SIGINT
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob('smoke/*/fold_*/*.ipynb'))) < 2: time.sleep(0.5)
    time.sleep(8)                                                         # both kernels are sleeping in the notebook
    t0 = time.time(); p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert time.time() - t0 < 20, 'Ctrl-C took too long'
    assert p.returncode == 130 and 'interrupted' in err and '--resume' in err, err[-2000:]
    run = resolve_run_dir('smoke', None, out, quiet=True)
    assert json.loads((run/'run.json').read_text())['status'] == 'interrupted' and run_status(run) == 'interrupted'
    assert not list(run.glob('fold_*/metrics.json'))
    r = _cli('summarize', 'smoke', '--out', str(out))
    assert 'interrupted' in r.stderr and '--resume' in r.stderr           # latest never passes for a finished run
    r = _cli('run', 'smoke', '--resume', 'latest', '-p', 'sleep', '0', '--out', str(out))
    assert r.returncode == 2 and 'resume continues a run with its own' in r.stderr
    # resume the same run in place; the sleep parameter was part of it, so shorten it through the run's params
    info = json.loads((run/'run.json').read_text()); info['params']['sleep'] = 0.0; (run/'run.json').write_text(json.dumps(info))
    r = _cli('run', 'smoke', '--resume', 'latest', '--out', str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.parent.name for p in run.glob('fold_*/metrics.json')) == ['fold_0', 'fold_1', 'fold_2']
    assert json.loads((run/'run.json').read_text())['status'] == 'finished' and len([p for p in out.glob('smoke/*/run.json') if p.parent.name != 'latest']) == 1

def test_resumed_folds_equal_an_uninterrupted_run(out):
    a = run_task('smoke', folds=[0, 1], params={'n': 50}, out=out/'a')
    b = run_task('smoke', folds=[0, 1], params={'n': 50}, out=out/'b')
    (b.run_dir/'fold_1'/'metrics.json').unlink()                         # fold 1 never finished
    c = run_task('smoke', out=out/'b', resume=b.run_id)
    assert c.run_dir == b.run_dir and c.metrics == a.metrics

SEQ = ['-p', 'source', 'synthetic', '-p', 'synthetic_size', '1500',   # about 0.45 s an epoch (120: under 0.02 s, all 30 done before Ctrl-C lands)
       '-p', 'min_item_cnt', '2', '-p', 'min_seq_len', '2',
       '-p', 'n_folds', '2', '-p', 'epochs', '30', '-p', 'max_steps', '0', '-p', 'batch_size', '16', '-p', 'hidden_size', '16',
       '-p', 'n_positions', '20', '-p', 'max_val_users', '30', '-p', 'models', 'sasrec', '-p', 'num_threads', '1',
       '-p', 'submission', 'False']

def test_sigint_after_an_epoch_then_resume_gives_the_uninterrupted_metrics(tmp_path):
    "seqrec: Ctrl-C once an epoch checkpoint exists, `--resume latest` finishes from it, metrics equal a clean run"
    data = ['-p', 'data_dir', str(tmp_path/'syn')]
    r = _cli('run', 'seqrec', '--fold', '0', *SEQ, *data, '--out', str(tmp_path/'clean'))
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path/'cut'
    p = subprocess.Popen([sys.executable, '-m', 'recsys_nb.cli', 'run', 'seqrec', '--fold', '0', *SEQ, *data, '--out', str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while time.time() < deadline and not list(out.glob('seqrec/*/fold_0/checkpoints/sasrec/state.json')): time.sleep(0.2)
    p.send_signal(signal.SIGINT); _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err[-2000:]
    run = resolve_run_dir('seqrec', None, out, quiet=True)
    st = json.loads(next(run.glob('fold_0/checkpoints/sasrec/state.json')).read_text())
    assert st['epoch'] < 29 and not (run/'fold_0'/'metrics.json').exists()   # it really stopped before the end
    r = _cli('run', 'seqrec', '--resume', 'latest', '--out', str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    clean = json.loads(next((tmp_path/'clean').glob('seqrec/*/fold_0/metrics.json')).read_text())
    resumed = json.loads((run/'fold_0'/'metrics.json').read_text())
    no_time = lambda ms: {k: {m: v for m, v in d.items() if 'seconds' not in m} for k, d in ms.items()}
    assert no_time(resumed['models']) == no_time(clean['models'])
    assert [h['loss'] for h in resumed['history']['sasrec']] == [h['loss'] for h in clean['history']['sasrec']]

NER = ['-p', 'epochs', '3', '-p', 'lr', '0.01', '-p', 'max_length', '24', '-p', 'stride', '6', '-p', 'n_folds', '2',
       '-p', 'device', 'cpu', '-p', 'num_threads', '1']

def test_ner_sigint_after_an_epoch_then_resume_gives_the_uninterrupted_metrics(tmp_path):
    "ner: Ctrl-C once an epoch checkpoint exists, `--resume latest` continues from it, metrics equal a clean run"
    from recsys_nb import ner
    tiny = ner.make_tiny_encoder(tmp_path/'tiny', hidden_size=32, num_layers=1)
    syn = make_synthetic('ner', tmp_path/'somd', size=4000, seed=3)     # about 1.5 s an epoch (1200: 0.45 s, too close to a Ctrl-C's own latency): Ctrl-C lands mid-run
    args = ['run', 'ner', '--fold', '0', *NER, '-p', 'model_name', str(tiny), '-p', 'data_dir', str(syn)]
    r = _cli(*args, '--out', str(tmp_path/'clean'))
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path/'cut'
    p = subprocess.Popen([sys.executable, '-m', 'recsys_nb.cli', *args, '--out', str(out)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while time.time() < deadline and not list(out.glob('ner/*/fold_0/checkpoints/state.json')): time.sleep(0.1)
    p.send_signal(signal.SIGINT); _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err[-2000:]
    run = resolve_run_dir('ner', None, out, quiet=True)
    st = load_json(run/'fold_0'/'checkpoints'/'state.json')
    assert st['epoch'] < 3 and not (run/'fold_0'/'metrics.json').exists() and run_status(run) == 'interrupted'
    with pytest.raises(FileNotFoundError, match='no saved fold model'): ner.find_fold_models(run)   # a checkpoint is no result
    r = _cli('run', 'ner', '--resume', 'latest', '--out', str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"after epoch {st['epoch']} of 3" in (run/'fold_0'/'ner.ipynb').read_text()             # it did continue
    clean_dir = next((tmp_path/'clean').glob('ner/*/fold_0'))
    clean, resumed = load_json(clean_dir/'metrics.json'), load_json(run/'fold_0'/'metrics.json')
    no_time = lambda h: [{k: v for k, v in e.items() if 'seconds' not in k and '_per_s' not in k} for e in h]
    assert resumed['models'] == clean['models'] and no_time(resumed['history']) == no_time(clean['history'])
    assert [resumed[k] for k in ('best_epoch', 'n_train', 'n_eval')] == [clean[k] for k in ('best_epoch', 'n_train', 'n_eval')]
    assert (run/'fold_0'/'test_entities.txt').read_text() == (clean_dir/'test_entities.txt').read_text()
    assert not (run/'fold_0'/'checkpoints').exists() and not (clean_dir/'checkpoints').exists()   # dropped once finished

# ------------------------------------------------------------------ 6. settings checked before any work

BAD = [  # task, parameter, value, what the error says (the nonsense settings that used to run, or fail late)
    ('smoke', 'n', 0, "'n' must be [8, inf)"),
    ('smoke', 'device', 'gpu', "'device' must be {auto|cpu|cuda|mps}"),
    ('cmn', 'epochs', -3, "'epochs' must be [0, inf)"), ('cmn', 'pretrain_epochs', -1, "'pretrain_epochs' must be [0, inf)"),
    ('cmn', 'neg_count', 0, "'neg_count' must be [1, inf)"), ('cmn', 'batch_size', 0, "'batch_size' must be [1, inf)"),
    ('seqrec', 'max_steps', -1, "'max_steps' must be [0, inf)"), ('seqrec', 'epochs', -2, "'epochs' must be [1, inf)"),
    ('seqrec', 'mask_prob', 1.5, "'mask_prob' must be (0, 1)"), ('seqrec', 'n_positions', 0, "'n_positions' must be [2, inf)"),
    ('ner', 'n_folds', 1, "'n_folds' must be [2, inf)"), ('ner', 'batch_size', 0, "'batch_size' must be [1, inf)"),
    ('retrieval', 'test_share', -0.5, "'test_share' must be (0, 1)"), ('retrieval', 'test_share', 1.0, "'test_share' must be (0, 1)"),
    ('retrieval', 'epochs', -2, "'epochs' must be [0, inf)"), ('retrieval', 'eval_k', -5, "'eval_k' must be [0, inf)"),
    ('purchase', 'grid_max_depth', [], "'grid_max_depth' must be each [1, 30]"),
    ('purchase', 'grid_max_depth', ['a', 'b'], "'grid_max_depth' must be each [1, 30]"),
    ('purchase', 'n_folds', 1, "'n_folds' must be [2, inf)"), ('purchase', 'engine', 'dask', "'engine' must be {local|spark}"),
]

@pytest.mark.parametrize('task,name,value,msg', BAD)
def test_nonsense_settings_refused_before_running(task, name, value, msg, out):
    with pytest.raises(ValueError, match=re.escape(msg)):
        run_task(task, params={name: value}, out=out)
    assert not (out/task).exists()

def test_every_task_declares_ranges_and_checks_them_itself():
    "the notebooks call check_params in their set-up cell, so JupyterLab/Kaggle runs are checked too"
    for t in list_tasks():
        ps = task_params(t)
        src = (ROOT/'nbs'/'tasks'/f'{t}.ipynb').read_text()
        assert f"check_params('{t}', globals())" in src, t
        for name in ('epochs', 'batch_size', 'n_folds', 'fold'):
            if name in ps: assert ps[name].check, f'{t}.{name} declares no range'
        if 'device' in ps: assert ps['device'].check, f'{t}.device declares no choices'

def test_check_params_outside_the_runner():
    with pytest.raises(ValueError, match="'noise' must be"): check_params('smoke', {'noise': -1.0, 'n': 10})
    assert check_params('smoke', {'n': 10}) == {'n': 10}

def test_list_shows_ranges(capsys):
    from recsys_nb.cli import main
    assert main(['list']) == 0
    assert "[1, inf)" in capsys.readouterr().out

# ------------------------------------------------------------------ 7. every error names the file, at load time

def test_retrieval_loaders_name_file_line_field(tmp_path):
    from recsys_nb.data import make_synthetic
    from recsys_nb.retrieval import load_competition
    import warnings as w
    d = make_synthetic('retrieval', tmp_path/'syn', size=40, seed=1)
    good = (d/'documents.jsonl').read_bytes()
    (d/'documents.jsonl').write_bytes(good.replace(b'\n', b'\n{"id": "x", "title": "caf\xe9", "contents": "c"}\n', 1))
    with pytest.raises(ValueError, match=r'documents.jsonl: line 2, column \d+: byte 0xe9 is not UTF-8'): load_competition(d)
    (d/'documents.jsonl').write_bytes(good)
    (d/'queries_train.json').write_bytes(b'\xef\xbb\xbf' + (d/'queries_train.json').read_bytes())   # a BOM is accepted
    assert len(load_competition(d).queries)
    qr = json.loads((d/'qrels_train.json').read_text()); qr[1]['relevance'] = -5
    (d/'qrels_train.json').write_text(json.dumps(qr, indent=1))
    with pytest.raises(ValueError, match=r"qrels_train.json: line \d+: field 'relevance' = -5 is negative"): load_competition(d)

def test_retrieval_warns_about_shared_and_empty_queries(tmp_path):
    from recsys_nb.data import make_synthetic
    from recsys_nb.retrieval import load_competition
    from recsys_nb.core import DataWarning
    d = make_synthetic('retrieval', tmp_path/'syn', size=40, seed=1)
    qt = json.loads((d/'queries_test.json').read_text()); qs = json.loads((d/'queries_train.json').read_text())
    qt.append(dict(qs[0])); qs[1]['query'] = '  '
    (d/'queries_test.json').write_text(json.dumps(qt)); (d/'queries_train.json').write_text(json.dumps(qs))
    with pytest.warns(DataWarning) as rec: load_competition(d)
    msgs = [str(r.message) for r in rec]
    assert any('also in queries_train.json' in m for m in msgs) and any('query text(s) are empty' in m for m in msgs)

def test_retrieval_test_share_with_competition_data_is_refused(tmp_path):
    from recsys_nb.data import make_synthetic
    d = make_synthetic('retrieval', tmp_path/'syn', size=40, seed=1)
    res = run_task('retrieval', folds=[0], params={'data_dir': str(d), 'test_share': 0.3, 'epochs': 0}, out=tmp_path/'out')
    assert not res.ok and 'test_share=0.3 applies to Cranfield only' in res.errors[0]

def test_ner_texts_name_file_and_missing_test_file_fails_before_training(tmp_path):
    from recsys_nb.data import make_synthetic
    from recsys_nb import ner
    d = make_synthetic('ner', tmp_path/'somd', size=24, seed=1)
    raw = (d/'train_texts.txt').read_bytes()
    (d/'train_texts.txt').write_bytes(raw.replace(b'\n', b' caf\xe9\n', 1)); (d/'train_entities.txt').write_bytes(
        (d/'train_entities.txt').read_bytes().replace(b'\n', b' O\n', 1))
    with pytest.raises(ValueError, match=r'train_texts.txt: line 1, column \d+: byte 0xe9 is not UTF-8'): ner.load_somd(d)
    (d/'train_texts.txt').write_bytes(raw); (d/'train_entities.txt').write_bytes((d/'train_entities.txt').read_bytes().replace(b' O\n', b'\n', 1))
    (d/'test_texts.txt').unlink()
    res = run_task('ner', folds=[0], params={'data_dir': str(d), 'epochs': 1, 'max_length': 32, 'stride': 8, 'limit': 16}, out=tmp_path/'out')
    assert not res.ok and 'test_texts.txt' in res.errors[0]
    assert not list((tmp_path/'out').glob('ner/*/fold_0/model'))                     # nothing was trained

@pytest.mark.parametrize('content,msg', [
    (b'', 'the file is empty'), (b'user,item\n1,2\n', 'not an .npz archive'),
])
def test_cmn_npz_errors_name_the_file_and_never_advise_pickle(tmp_path, content, msg):
    from recsys_nb.cmn import load_cmn_npz
    (tmp_path/'x.npz').write_bytes(content)
    with pytest.raises(ValueError, match=msg) as e: load_cmn_npz(tmp_path/'x.npz')
    assert 'x.npz' in str(e.value) and 'allow_pickle' not in str(e.value)

def test_cmn_npz_truncated_and_object_arrays(tmp_path):
    import numpy as np
    from recsys_nb.cmn import load_cmn_npz
    np.savez(tmp_path/'ok.npz', train_data=np.array([[0, 1], [1, 2]]), test_users=np.array([0]), test_pos=np.array([2]),
             test_neg=np.array([[3]]))
    raw = (tmp_path/'ok.npz').read_bytes(); (tmp_path/'cut.npz').write_bytes(raw[:len(raw) // 2])
    with pytest.raises(ValueError, match='cut.npz: (unreadable .npz archive|array .* is truncated)') as e: load_cmn_npz(tmp_path/'cut.npz')
    assert 'allow_pickle' not in str(e.value)
    np.savez(tmp_path/'obj.npz', train_data=np.array([[0, 1], [1, 2]], dtype=object), test_users=np.array([0]),
             test_pos=np.array([2]), test_neg=np.array([[3]]))
    with pytest.raises(ValueError, match="obj.npz: array 'train_data' holds Python objects") as e: load_cmn_npz(tmp_path/'obj.npz')
    assert 'allow_pickle' not in str(e.value)

# ---- seqrec: parquet files

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

# ---- purchase: CSV files

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


def test_no_pickle_loading_in_these_tasks():
    "seqrec and purchase read parquet, CSV, JSON and safetensors only: no np.load / torch.load / pickle that could run code"
    for mod in (sr, pu):
        src = Path(mod.__file__).read_text()
        for bad in ('np.load(', 'allow_pickle=True', 'torch.load(', 'import pickle', 'pickle.load'):
            assert bad not in src, (mod.__name__, bad)

# ------------------------------------------------------------------ 8. warnings a user wants to hear

def test_cmn_warns_when_test_positives_are_training_pairs(tmp_path):
    import numpy as np
    from recsys_nb.cmn import load_cmn_npz
    from recsys_nb.core import DataWarning
    np.savez(tmp_path/'leak.npz', train_data=np.array([[0, 1], [0, 2], [1, 2]]), test_users=np.array([0, 1]),
             test_pos=np.array([2, 0]), test_neg=np.array([[3], [3]]))
    with pytest.warns(DataWarning, match=r'1 of 2 test positives are also training pairs'): load_cmn_npz(tmp_path/'leak.npz')

# ---- seqrec

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

# ---- purchase

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
