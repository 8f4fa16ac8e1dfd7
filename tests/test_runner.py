"The papermill runner and the recsys-nb CLI, on the tiny `smoke` pipeline notebook"
import json, os, subprocess, sys
from pathlib import Path
import pytest
from recsys_nb.runner import run_task
from recsys_nb.cli import main
from recsys_nb.registry import task_params, load_registry
from recsys_nb.results import summarize, resolve_run_dir
from recsys_nb.core import load_json

def test_two_folds(out):
    tiny = load_registry()['smoke']['tiny']   # the test preset of nbs/tasks/tasks.yaml
    res = run_task('smoke', folds=[0, 1], params=tiny, out=out)
    assert res.ok, res.errors
    assert sorted(res.metrics) == [0, 1]
    for f in (0, 1):
        d = res.run_dir/f'fold_{f}'
        assert (d/'smoke.ipynb').exists() and (d/'predictions.png').exists()
        assert load_json(d/'params.json') == {**tiny, 'fold': f, 'out_dir': str(d.resolve())}
        m = load_json(d/'metrics.json')['models']
        assert m['noisy_model']['mae'] < m['mean_baseline']['mae']   # noise 0.5 beats predicting the mean of N(0,1)
    # the two folds evaluate different rows, so their metrics differ
    assert res.metrics[0]['models']['noisy_model'] != res.metrics[1]['models']['noisy_model']
    info = load_json(res.run_dir/'run.json')
    assert info['folds'] == [0, 1] and info['folds_status']['1']['ok']
    assert (out/'smoke'/'latest').resolve() == res.run_dir.resolve()

def test_parallel_jobs(out):
    res = run_task('smoke', folds=[0, 1, 2], params={'n': 30}, out=out, jobs=2)
    assert res.ok and [f.fold for f in res.folds] == [0, 1, 2]

def test_unknown_and_mistyped_params_rejected_before_running(out, capsys):
    assert main(['run', 'smoke', '-p', 'epochs', '3', '--out', str(out)]) == 2
    assert "does not declare parameter(s) ['epochs']" in capsys.readouterr().err
    assert main(['run', 'smoke', '-p', 'noise', 'loud', '--out', str(out)]) == 2
    assert "'noise' expects float" in capsys.readouterr().err
    with pytest.raises(TypeError, match="'n' expects int"): run_task('smoke', params={'n': 'big'}, out=out)
    with pytest.raises(ValueError, match='outside 0..3'): run_task('smoke', folds=[4], out=out)
    assert not (out/'smoke').exists()    # nothing ran, nothing was created

def test_param_file(out, tmp_path):
    f = tmp_path/'p.yaml'; f.write_text('n: 40\nnoise: 2\n')
    assert main(['run', 'smoke', '--fold', '2', '-f', str(f), '-p', 'n', '50', '--out', str(out)]) == 0
    d = resolve_run_dir('smoke', out=out)
    assert load_json(d/'fold_2'/'params.json')['n'] == 50 and load_json(d/'fold_2'/'params.json')['noise'] == 2.0
    f.write_text('n: [1, 2]\n')
    assert main(['run', 'smoke', '-f', str(f), '--out', str(out)]) == 2

def test_failing_notebook_is_reported_and_kept(out, capsys):
    rc = main(['run', 'smoke', '--folds', '0,1', '-p', 'fail', 'True', '--out', str(out)])
    assert rc == 1
    err = capsys.readouterr().err
    assert 'fold 0 failed' in err and 'fold 1 failed' in err            # the other fold still ran
    assert 'raised ValueError: smoke notebook asked to fail' in err and '`if fail: raise ValueError' in err
    d = resolve_run_dir('smoke', out=out)
    nb = json.loads((d/'fold_0'/'smoke.ipynb').read_text())
    assert any(o.get('ename') == 'ValueError' for c in nb['cells'] for o in c.get('outputs', []))
    assert load_json(d/'run.json')['folds_status']['0']['ok'] is False

def test_fail_fast(out):
    res = run_task('smoke', folds=[0, 1], params={'fail': True}, out=out, fail_fast=True)
    assert not res.ok and [f.fold for f in res.folds] == [0]

def test_no_overwrite(out):
    a = run_task('smoke', folds=[0], params={'n': 20}, out=out)
    before = (a.run_dir/'fold_0'/'metrics.json').read_bytes()
    b = run_task('smoke', folds=[0], params={'n': 20}, out=out)
    assert a.run_dir != b.run_dir and a.run_dir.exists()
    assert (a.run_dir/'fold_0'/'metrics.json').read_bytes() == before
    assert resolve_run_dir('smoke', out=out) == b.run_dir.resolve()

def test_summarize(out, capsys):
    res = run_task('smoke', folds=[0, 1, 2], params={'n': 90}, out=out)
    assert main(['summarize', 'smoke', '--out', str(out)]) == 0
    s = summarize('smoke', res.run_id, out)
    for p in ('md', 'csv', 'png'): assert s[p].exists() and s[p].stat().st_size > 0
    tab = s['table']
    row = tab.filter((tab['model'] == 'noisy_model') & (tab['metric'] == 'mae')).row(0, named=True)
    vals = [res.metrics[f]['models']['noisy_model']['mae'] for f in (0, 1, 2)]
    assert row['mean'] == pytest.approx(sum(vals) / 3) and row['fold_2'] == pytest.approx(vals[2])
    assert '| noisy_model |' in s['markdown'] and '±' in s['markdown']
    assert s['png'].read_bytes()[:4] == b'\x89PNG'

def test_list_shows_params(capsys):
    assert main(['list']) == 0
    o = capsys.readouterr().out
    assert 'smoke:' in o and "noise" in o and "float" in o and "noise of the model's predictions" in o

def test_console_script(out):
    r = subprocess.run(['recsys-nb', 'run', 'smoke', '-p', 'n', '30', '--out', str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert 'fold 0: ok' in r.stdout and '| noisy_model |' in r.stdout

def test_demo_runs_registered_tasks_and_writes_overview_and_report(out, capsys):
    assert main(['demo', '--tasks', 'smoke', '--out', str(out)]) == 0
    o = capsys.readouterr().out
    assert '| smoke | ok |' in o and '| noisy_model |' in o
    assert '| smoke | ok |' in (out/'demo.md').read_text()
    html = (out/'report.html').read_text()
    assert 'noisy_model' in html and 'data:image/png;base64' in html
