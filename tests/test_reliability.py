"""A fresh machine runs everything; nothing a user owns is overwritten; nonsense settings are refused (issue 12).
Runner-side checks on the `smoke` task; each task's own loaders are checked in its test module."""
import json, os, re, signal, subprocess, sys, time, shutil
from pathlib import Path
import pytest
from recsys_nb.runner import run_task
from recsys_nb.registry import task_params, check_params, list_tasks
from recsys_nb.results import resolve_run_dir, run_status
from recsys_nb.nbtools import write_bundle, render_report

ROOT = Path(__file__).resolve().parent.parent

def _cli(*args, cwd=None, env=None, timeout=600):
    return subprocess.run([sys.executable, '-m', 'recsys_nb.cli', *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)

# ------------------------------------------------------------------ 1. default data on a fresh clone

@pytest.mark.skipif(shutil.which('git') is None or not (ROOT/'.git').exists(), reason='needs a git checkout')
def test_fresh_clone_runs_retrieval_and_ner_on_default_data(tmp_path):
    "a clone with no ../shared sibling and no RECSYS_NB_DATA runs one quick fold of retrieval and ner"
    clone = tmp_path/'fresh'/'recsys_nb'
    subprocess.run(['git', 'clone', '-q', '--no-hardlinks', str(ROOT), str(clone)], check=True)
    assert not (clone.parent/'shared').exists() and (clone/'data'/'SHA256SUMS').exists()
    env = {k: v for k, v in os.environ.items() if k not in ('RECSYS_NB_DATA', 'RECSYS_NB_TASKS_DIR')}
    env['PYTHONPATH'] = str(clone); env['RECSYS_NB_KAGGLE_INPUT'] = str(tmp_path/'no-kaggle')
    import yaml
    reg = yaml.safe_load((clone/'nbs'/'tasks'/'tasks.yaml').read_text())
    for task in ('retrieval', 'ner'):
        args = ['run', task, '--fold', '0', '--out', str(tmp_path/'outputs')]
        for k, v in (reg[task].get('quick') or {}).items(): args += ['-p', k, json.dumps(v) if not isinstance(v, str) else v]
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

SEQ = ['-p', 'source', 'synthetic', '-p', 'synthetic_size', '120', '-p', 'min_item_cnt', '2', '-p', 'min_seq_len', '2',
       '-p', 'n_folds', '2', '-p', 'epochs', '4', '-p', 'max_steps', '0', '-p', 'batch_size', '16', '-p', 'hidden_size', '16',
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
    assert st['epoch'] < 3 and not (run/'fold_0'/'metrics.json').exists()   # it really stopped before the end
    r = _cli('run', 'seqrec', '--resume', 'latest', '--out', str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    clean = json.loads(next((tmp_path/'clean').glob('seqrec/*/fold_0/metrics.json')).read_text())
    resumed = json.loads((run/'fold_0'/'metrics.json').read_text())
    no_time = lambda ms: {k: {m: v for m, v in d.items() if 'seconds' not in m} for k, d in ms.items()}
    assert no_time(resumed['models']) == no_time(clean['models'])
    assert [h['loss'] for h in resumed['history']['sasrec']] == [h['loss'] for h in clean['history']['sasrec']]

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

# ------------------------------------------------------------------ 8. warnings a user wants to hear

def test_cmn_warns_when_test_positives_are_training_pairs(tmp_path):
    import numpy as np
    from recsys_nb.cmn import load_cmn_npz
    from recsys_nb.core import DataWarning
    np.savez(tmp_path/'leak.npz', train_data=np.array([[0, 1], [0, 2], [1, 2]]), test_users=np.array([0, 1]),
             test_pos=np.array([2, 0]), test_neg=np.array([[3], [3]]))
    with pytest.warns(DataWarning, match=r'1 of 2 test positives are also training pairs'): load_cmn_npz(tmp_path/'leak.npz')
