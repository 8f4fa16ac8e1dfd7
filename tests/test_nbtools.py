"recsys_nb.nbtools: install cell, offline bundles run where recsys_nb is not installed, the HTML report, `recsys-nb lab`"
import base64, json, os, re, shutil, subprocess, sys, sysconfig
from pathlib import Path
import nbformat, papermill as pm, pytest
from recsys_nb.core import load_json, save_json
from recsys_nb.data import assign_folds
from recsys_nb.runner import run_task, main, task_notebook, task_params, tasks_dir, list_tasks
from recsys_nb.nbtools import (INSTALL_CELL, INSTALL_TAG, BUNDLE_TAG, ensure_install_cell, build_wheel, write_bundle,
                               render_report, report_runs, lab_command)

ROOT = Path(__file__).resolve().parent.parent

def isolated_venv(path:Path)->Path:
    """A venv that has this interpreter's packages but cannot import recsys_nb: no system site-packages; every entry of
    the current site-packages symlinked into the venv's except recsys_nb's own (its editable-install hook included)"""
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(path)], check=True)
    py = path/'bin'/'python'
    dest = Path(subprocess.run([str(py), '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))'],
                               capture_output=True, text=True, check=True).stdout.strip())
    src = Path(sysconfig.get_path('purelib'))
    for p in src.iterdir():
        if 'recsys_nb' in p.name.lower().replace('-', '_'): continue
        if not (dest/p.name).exists(): (dest/p.name).symlink_to(p)
    return py

def clean_env(**kw)->dict:
    "Environment without anything that would point Python at a recsys_nb checkout"
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'RECSYS_NB_TASKS_DIR', 'VIRTUAL_ENV')}
    return {**env, 'PIP_NO_INDEX': '1', 'PIP_DISABLE_PIP_VERSION_CHECK': '1', **kw}

def can_import(py, mod, cwd)->bool:
    return subprocess.run([str(py), '-c', f'import {mod}'], cwd=cwd, env=clean_env(), capture_output=True).returncode == 0

@pytest.fixture(scope='module')
def wheel(tmp_path_factory): return build_wheel(tmp_path_factory.mktemp('wheel'))

# ---------------------------------------------------------------- the install cell

def test_smoke_has_the_install_cell_and_papermill_still_finds_its_parameters(tmp_path):
    nb = nbformat.read(task_notebook('smoke'), as_version=4)
    codes = [c for c in nb.cells if c.cell_type == 'code']
    assert codes[0].source == INSTALL_CELL and codes[0].metadata.tags == [INSTALL_TAG]
    assert codes[1].metadata.tags == ['parameters']
    p = tmp_path/'smoke.ipynb'; shutil.copy(task_notebook('smoke'), p)
    assert ensure_install_cell(p) is False and p.read_bytes() == task_notebook('smoke').read_bytes()   # already up to date
    assert set(pm.inspect_notebook(str(p))) >= {'data_dir', 'fold', 'n_folds', 'seed', 'device', 'out_dir'}

@pytest.mark.parametrize('name', sorted(p.stem for p in tasks_dir().glob('*.ipynb') if not p.stem.startswith('_')))
def test_every_pipeline_notebook_starts_with_the_install_cell(name):
    "Kaggle/Colab: each notebook in nbs/tasks installs recsys_nb first (apply `ensure_install_cell` to a new one)"
    nb = nbformat.read(tasks_dir()/f'{name}.ipynb', as_version=4)
    codes = [c for c in nb.cells if c.cell_type == 'code']
    assert codes[0].source == INSTALL_CELL, f'nbs/tasks/{name}.ipynb: run recsys_nb.nbtools.ensure_install_cell on it'
    assert sum('parameters' in c.metadata.get('tags', []) for c in codes) == 1

def test_install_cell_points_at_this_repository():
    import configparser
    cfg = configparser.ConfigParser(); cfg.read(ROOT/'settings.ini')
    assert f'git+{cfg["DEFAULT"]["git_url"]}"' in INSTALL_CELL

def test_install_cell_installs_only_when_missing(tmp_path, wheel):
    venv = isolated_venv(tmp_path/'venv')
    cell = tmp_path/'cell.py'; cell.write_text(INSTALL_CELL + '\nimport recsys_nb; print("OK", recsys_nb.__file__)\n')
    run = lambda py, **kw: subprocess.run([str(py), str(cell)], cwd=tmp_path, env=clean_env(**kw), capture_output=True, text=True)
    # where recsys_nb is importable the cell does nothing: a bogus spec would fail if pip were called
    r = run(sys.executable, PYTHONPATH=str(ROOT), RECSYS_NB_PIP_SPEC=str(tmp_path/'nope.whl'))
    assert r.returncode == 0 and 'OK' in r.stdout, r.stderr
    # RECSYS_NB_SKIP_INSTALL=1 skips it even where recsys_nb is missing
    assert not can_import(venv, 'recsys_nb', tmp_path)
    r = run(venv, RECSYS_NB_SKIP_INSTALL='1', RECSYS_NB_PIP_SPEC=str(wheel))
    assert r.returncode != 0 and "No module named 'recsys_nb'" in r.stderr
    # missing: it installs (here from a local wheel, offline) and the same process imports it
    r = run(venv, RECSYS_NB_PIP_SPEC=str(wheel))
    assert r.returncode == 0, r.stderr
    assert f'OK {tmp_path}/venv/lib' in r.stdout, r.stdout

# ---------------------------------------------------------------- bundles

def test_bundle_runs_in_a_fresh_env_without_recsys_nb(tmp_path, wheel):
    b = write_bundle('smoke', {'n': '90', 'noise': '0.1', 'fold': '1'}, tmp_path/'smoke_bundle.ipynb', from_text=True, wheel=wheel)
    py = isolated_venv(tmp_path/'venv')
    work = tmp_path/'kaggle_working'; work.mkdir()
    assert not can_import(py, 'recsys_nb', work), 'the venv must not see recsys_nb'
    assert can_import(py, 'papermill', work) and can_import(py, 'torch', work)
    # a kernel spec of its own, so the kernel is the venv's interpreter and nothing else
    kdir = tmp_path/'jupyter'/'kernels'/'bundle-venv'; kdir.mkdir(parents=True)
    save_json({'argv': [str(py), '-m', 'ipykernel_launcher', '-f', '{connection_file}'], 'display_name': 'venv', 'language': 'python'}, kdir/'kernel.json')
    r = subprocess.run([str(py), '-m', 'papermill', str(b), str(work/'executed.ipynb'), '-k', 'bundle-venv'], cwd=work,
                       env=clean_env(JUPYTER_PATH=str(tmp_path/'jupyter')), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    nb = nbformat.read(work/'executed.ipynb', as_version=4)
    first = ''.join(o.get('text', '') for o in nb.cells[1].outputs)
    assert nb.cells[1].metadata.tags == [BUNDLE_TAG] and f'installed {wheel.name} from this notebook' in first, first
    assert f'at {tmp_path}/venv/lib' in first, first                  # imported from the venv, not from a checkout
    m = load_json(work/'metrics.json')                                  # out_dir "." = the working folder, as on Kaggle
    test = assign_folds(range(90), 4, 42) == 1
    assert m['n_test'] == int(test.sum())                               # the bundle's n=90 and fold=1 were used
    assert m['models']['noisy_model']['mae'] < 0.2 < m['models']['mean_baseline']['mae']   # and noise=0.1
    assert (work/'predictions.png').stat().st_size > 1000
    assert can_import(py, 'recsys_nb', work)                           # the bundle installed it

def test_bundle_cli_rejects_bad_parameters(tmp_path, capsys, wheel):
    assert main(['bundle', 'smoke', '-p', 'epochs', '1', '--wheel', str(wheel), '-o', str(tmp_path/'b.ipynb')]) == 2
    assert "does not declare parameter(s) ['epochs']" in capsys.readouterr().err
    assert main(['bundle', 'smoke', '-p', 'noise', 'loud', '--wheel', str(wheel), '-o', str(tmp_path/'b.ipynb')]) == 2
    assert "'noise' expects float" in capsys.readouterr().err
    assert not (tmp_path/'b.ipynb').exists()
    assert main(['bundle', 'smoke', '-p', 'n', '30', '--wheel', str(wheel), '-o', str(tmp_path/'b.ipynb')]) == 0
    nb = nbformat.read(tmp_path/'b.ipynb', as_version=4)
    src = next(c.source for c in nb.cells if 'parameters' in c.metadata.get('tags', []))
    assert 'n: int = 30 ' in src and 'noise: float = 0.5 ' in src
    b64 = re.search(r'WHEEL_B64 = \(\n(.*?)\n\)', nb.cells[1].source, re.S).group(1)
    assert base64.b64decode(''.join(re.findall(r'"([^"]*)"', b64))) == wheel.read_bytes()

# ---------------------------------------------------------------- the report

def fake_run(out:Path, task:str, run_id:str, folds:dict):
    "A run folder laid out as the runner writes one (for a task that has no notebook here)"
    d = out/task/run_id
    for f, models in folds.items():
        (d/f'fold_{f}').mkdir(parents=True)
        if models is not None: save_json({'models': models}, d/f'fold_{f}'/'metrics.json')
    save_json({'task': task, 'run_id': run_id, 'params': {'epochs': 1}, 'started': '2026-01-01T00:00:00+00:00'}, d/'run.json')
    link = out/task/'latest'
    if link.is_symlink(): link.unlink()
    link.symlink_to(run_id)
    return d

def test_report_renders_every_task_with_runs(tmp_path):
    out = tmp_path/'outputs'
    res = run_task('smoke', folds=[0, 1], params={'n': 60}, out=out)
    assert res.ok, res.errors
    good = fake_run(out, 'other', '20260101T000000Z-aaaa', {0: {'gru': {'ndcg@10': 0.3}, 'pop_baseline': {'ndcg@10': 0.1}},
                                                            1: {'gru': {'ndcg@10': 0.5}, 'pop_baseline': {'ndcg@10': 0.2}}})
    fake_run(out, 'other', '20260102T000000Z-bbbb', {0: None})   # the latest run failed: the report shows the one before
    (out/'bundles').mkdir()                                      # not a task: no runs in it
    assert report_runs(out) == {'smoke': res.run_dir, 'other': good}
    html = render_report(out, tmp_path/'r'/'report.html').read_text()
    assert (tmp_path/'r'/'report.report.ipynb').exists()
    assert '<h2' in html and 'smoke' in html and 'other' in html
    assert '<td>gru</td><td>0.4000 ± 0.1000</td>' in html                        # mean ± std over the two folds
    assert '<td>pop_baseline <i>(baseline)</i></td><td>0.1500 ± 0.0500</td>' in html
    assert html.index('<td>noisy_model</td>') < html.index('<td>mean_baseline <i>(baseline)</i>')
    assert '20260101T000000Z-aaaa' in html and '20260102T000000Z-bbbb' not in html
    # the smoke folds' two predictions.png (and summary.png when `summarize` ran), embedded
    pngs = re.findall(r'<img[^>]+src="data:image/png;base64,', html)
    assert len(pngs) == 2 + (res.run_dir/'summary.png').exists(), len(pngs)
    assert not re.search(r'<script[^>]+src=', html) and 'cdnjs' not in html         # self-contained
    assert 'jp-OutputArea-output" data-mime-type="application/vnd.jupyter.stderr' not in html  # no progress bars, warnings

def test_report_cli_errors(tmp_path, capsys):
    assert main(['report', '--runs', str(tmp_path/'none')]) == 2
    assert 'does not exist' in capsys.readouterr().err
    (tmp_path/'o').mkdir()
    assert main(['report', '--runs', str(tmp_path/'o'), '--tasks', 'smoke']) == 2
    assert "no runs of task 'smoke'" in capsys.readouterr().err

# ---------------------------------------------------------------- lab

def test_lab_passes_arguments_through():
    r = subprocess.run([sys.executable, '-c', 'import sys; from recsys_nb.runner import main; sys.exit(main())', 'lab', '--version'], capture_output=True, text=True, timeout=120,
                       env={**os.environ, 'PYTHONPATH': str(ROOT)})
    import jupyterlab
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == jupyterlab.__version__, (r.stdout, r.stderr)
    assert '--MappingKernelManager.default_kernel_name=python3' in r.stdout
    cmd, env = lab_command(['--port', '9999'])
    assert cmd[-2:] == ['--port', '9999'] and env['PYTHONPATH'].split(os.pathsep)[0] == str(ROOT)
