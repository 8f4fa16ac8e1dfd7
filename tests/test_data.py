"Data lookup order and its error message"
import os
from pathlib import Path
import pytest
from recsys_nb.data import find_data, DATA_ENV, KAGGLE_ENV, load_movielens

@pytest.fixture
def places(tmp_path, monkeypatch):
    for sub in ('explicit', 'env/ds', 'kaggle/comp'):
        (tmp_path/sub).mkdir(parents=True); (tmp_path/sub/'f.txt').write_text(sub)
    monkeypatch.setenv(KAGGLE_ENV, str(tmp_path/'kaggle'))
    monkeypatch.setenv(DATA_ENV, str(tmp_path/'env'))
    return tmp_path

def test_order(places, monkeypatch):
    assert find_data('ds', ['f.txt'], places/'explicit') == places/'explicit'
    assert find_data('ds', ['f.txt']) == places/'env'/'ds'
    monkeypatch.delenv(DATA_ENV)
    assert find_data('ds', ['f.txt']) == places/'kaggle'/'comp'

def test_explicit_dir_never_falls_back(places):
    with pytest.raises(FileNotFoundError, match='data_dir parameter'): find_data('ds', ['f.txt'], places/'missing')

def test_error_lists_places_and_files(places):
    with pytest.raises(FileNotFoundError) as e: find_data('ds', ['g.txt', 'h.txt'])
    msg = str(e.value)
    assert "['g.txt', 'h.txt']" in msg and f'${DATA_ENV}' in msg and 'kaggle input' in msg and 'data folder' in msg

def test_shared_data_found_without_settings(monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    assert find_data('cranfield', ['cran.all.1400']).name == 'cranfield'

def test_movielens_from_package(monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    r, i = load_movielens('ml-100k')
    assert r.shape == (100_000, 4) and r['user_id'].n_unique() == 943 and i.height == 1682
    with pytest.raises(ValueError, match="expected 'ml-100k' or 'ml-1m'"): load_movielens('ml-20m')
