"""JupyterLab in a real browser: run pipeline notebooks through the UI in headless Debian Chromium (Selenium).

Needs `apt-get install -y chromium chromium-driver` and `pip install selenium`; runs with `pytest --browser` or
RECSYS_NB_BROWSER_TESTS=1. Screenshots go to outputs/test-artifacts/."""
import json, os, re, shutil, socket, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path
import papermill as pm, pytest
from recsys_nb.runner import run_task
from recsys_nb.registry import task_notebook
from recsys_nb.nbtools import lab_command, report_notebook

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT/'outputs'/'test-artifacts'
CHROMIUM, CHROMEDRIVER = os.environ.get('CHROMIUM', '/usr/bin/chromium'), os.environ.get('CHROMEDRIVER', '/usr/bin/chromedriver')
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', '--window-size=1400,1800']

def free_port()->int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def wait_http(url, proc, log:Path, timeout=90):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None: raise RuntimeError(f'JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}')
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200: return
        except OSError: time.sleep(0.5)
    raise TimeoutError(f'JupyterLab did not answer {url} within {timeout} s')

@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    "JupyterLab (`recsys-nb lab`'s command) on loopback, token-less, serving a temp folder; its URL and folder"
    for f in (CHROMIUM, CHROMEDRIVER):
        if not Path(f).exists(): pytest.fail(f'{f} missing: apt-get install -y chromium chromium-driver')
    root = tmp_path_factory.mktemp('lab')
    state = root/'.state'
    port = free_port()
    cmd, env = lab_command(['--no-browser', f'--port={port}', '--ServerApp.ip=127.0.0.1', '--IdentityProvider.token=',
                            '--ServerApp.password=', '--ServerApp.port_retries=0', '--LabApp.news_url=None',
                            '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate'], root=root)
    news = state/'settings'/'@jupyterlab'/'apputils-extension'/'notification.jupyterlab-settings'
    news.parent.mkdir(parents=True); news.write_text('{"fetchNews": "false"}')   # no "get news?" toast over the page
    env.update(JUPYTER_CONFIG_DIR=str(state/'config'), JUPYTER_RUNTIME_DIR=str(state/'runtime'), JUPYTERLAB_SETTINGS_DIR=str(state/'settings'),
               JUPYTERLAB_WORKSPACES_DIR=str(state/'workspaces'), RECSYS_NB_PROGRESS='0', MPLBACKEND='Agg')
    env['PYTHONPATH'] = os.pathsep.join([str(ROOT), env['PYTHONPATH']])  # the kernels import this checkout's recsys_nb
    log = open(root/'lab.log', 'w')
    proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f'http://127.0.0.1:{port}/api/status', proc, root/'lab.log')
        yield f'http://127.0.0.1:{port}', root
    finally:
        proc.terminate()
        try: proc.wait(20)
        except subprocess.TimeoutExpired: proc.kill()
        log.close()
        ARTIFACTS.mkdir(parents=True, exist_ok=True); shutil.copy(root/'lab.log', ARTIFACTS/'jupyterlab.log')

@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions(); opts.binary_location = CHROMIUM
    for f in FLAGS + [f'--user-data-dir={tmp_path_factory.mktemp("chromium-profile")}']: opts.add_argument(f)
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(60)
    try: yield drv
    finally: drv.quit()

def run_all_through_ui(drv, url, name, timeout=90):
    "Open notebook `name` in JupyterLab, wait for its kernel, Run > Run All Cells, wait until every cell ran"
    try: _run_all(drv, url, name, timeout)
    except Exception:
        screenshot(drv, f'failed-{name}.png', check=False); raise

def _run_all(drv, url, name, timeout):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from selenium.webdriver.support import expected_conditions as EC
    wait = WebDriverWait(drv, timeout)
    drv.get(f'{url}/lab/tree/{name}')
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '.jp-NotebookPanel .jp-Cell')))
    wait.until(lambda d: kernel_state(url, name) == 'idle')   # the notebook's kernel started and is ready
    next(e for e in drv.find_elements(By.CSS_SELECTOR, '.lm-MenuBar-item') if e.text.strip() == 'Run').click()
    label = lambda d: [e for e in d.find_elements(By.CSS_SELECTOR, '.lm-Menu-item') if e.text.split('\n')[0].strip() == 'Run All Cells']
    wait.until(label)[0].click()
    n_code = len(drv.find_elements(By.CSS_SELECTOR, '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell'))
    def done(d):   # every code cell has an execution count, none is queued ([*]) and the kernel is idle again
        prompts, status = d.execute_script(
            "const p = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');"
            "return [Array.from(p.querySelectorAll('.jp-CodeCell .jp-InputPrompt')).map(e => e.textContent.trim()),"
            "        p.querySelector('.jp-Notebook-ExecutionIndicator').getAttribute('data-status')]")
        return (len(prompts) == n_code and all(re.fullmatch(r'\[\d+\]:', p) for p in prompts) and status == 'idle'
                and kernel_state(url, name) == 'idle')
    wait.until(done)
    errors = drv.find_elements(By.CSS_SELECTOR, '.jp-NotebookPanel:not(.lm-mod-hidden) [data-mime-type="application/vnd.jupyter.error"]')
    assert not errors, errors[0].text[:2000]

def kernel_state(url, name):
    "Execution state of the kernel of notebook `name` as the server reports it (None before it has one)"
    with urllib.request.urlopen(f'{url}/api/sessions', timeout=5) as r: sessions = json.load(r)
    return next((s['kernel']['execution_state'] for s in sessions if s.get('path') == name and s.get('kernel')), None)

def screenshot(drv, name, check=True):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    drv.save_screenshot(str(ARTIFACTS/name))
    if check: assert (ARTIFACTS/name).stat().st_size > 10_000

def test_report_notebook_shows_metrics_table_and_plots(lab, browser):
    "The report pipeline notebook over a tiny two-fold smoke run: its metrics table and plots appear in the page"
    from selenium.webdriver.common.by import By
    url, root = lab
    res = run_task('smoke', folds=[0, 1], params={'n': 60}, out=root/'outputs')
    assert res.ok, res.errors
    pm.execute_notebook(str(report_notebook()), str(root/'report.ipynb'), parameters={'runs_dir': str(root/'outputs')}, prepare_only=True)
    run_all_through_ui(browser, url, 'report.ipynb')
    out = '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output'
    tables = browser.find_elements(By.CSS_SELECTOR, f'{out} table.recsys-nb-metrics')
    assert len(tables) == 1 and 'noisy_model' in tables[0].text and 'mean_baseline' in tables[0].text and '±' in tables[0].text
    imgs = browser.find_elements(By.CSS_SELECTOR, f'{out} img')
    assert len(imgs) >= 2 and all(i.get_attribute('src').startswith('data:image/png') for i in imgs)
    assert all(browser.execute_script('return arguments[0].naturalWidth', i) > 100 for i in imgs)   # decoded, real images
    browser.execute_script('arguments[0].scrollIntoView()', tables[0])
    screenshot(browser, 'browser-report.png')

def test_task_notebook_runs_through_the_ui(lab, browser):
    "A tiny parameterised copy of the smoke task (install cell included): it runs, shows its metrics, writes its plot"
    from selenium.webdriver.common.by import By
    url, root = lab
    out = root/'smoke_out'
    pm.execute_notebook(str(task_notebook('smoke')), str(root/'smoke.ipynb'), parameters={'n': 80, 'out_dir': str(out)}, prepare_only=True)
    run_all_through_ui(browser, url, 'smoke.ipynb')
    text = browser.find_element(By.CSS_SELECTOR, '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook').text
    assert "'noisy_model': {'mae':" in text and "'mean_baseline'" in text
    assert (out/'metrics.json').exists() and (out/'predictions.png').stat().st_size > 1000
    screenshot(browser, 'browser-smoke.png')
