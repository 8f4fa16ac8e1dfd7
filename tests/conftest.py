import os, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault('RECSYS_NB_PROGRESS', '0')
os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')

def pytest_addoption(parser):
    parser.addoption('--browser', action='store_true', default=False, help='run the JupyterLab browser tests')

def pytest_configure(config):
    config.addinivalue_line('markers', 'browser: needs Debian chromium + chromedriver (run with --browser)')
    config.addinivalue_line('markers', 'slow: slow test')

def pytest_collection_modifyitems(config, items):
    if config.getoption('--browser') or os.environ.get('RECSYS_NB_BROWSER_TESTS') == '1': return
    skip = pytest.mark.skip(reason='browser test: pass --browser or set RECSYS_NB_BROWSER_TESTS=1')
    for it in items:
        if 'browser' in it.keywords: it.add_marker(skip)

@pytest.fixture
def out(tmp_path): return tmp_path/'outputs'
