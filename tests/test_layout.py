"The package's layering: no import cycle between its modules, one command-line module, one place that reads runs back"
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent/'recsys_nb'

def _imports(path:Path)->set[str]:
    "recsys_nb modules `path` imports anywhere (module level or inside functions)"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = ('recsys_nb.' + node.module if node.level and node.module else node.module or '') if node.level <= 1 else ''
            if node.level and not node.module: mod = 'recsys_nb'
            if mod.startswith('recsys_nb'):
                out.add(mod)
                if mod == 'recsys_nb': out |= {f'recsys_nb.{a.name}' for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith('recsys_nb')}
    return {m for m in out if m != 'recsys_nb' and (PKG/(m.split('.', 1)[1] + '.py')).exists()}

def graph()->dict[str, set[str]]:
    return {f'recsys_nb.{p.stem}': _imports(p) for p in PKG.glob('*.py') if not p.stem.startswith('_')}

def test_no_import_cycle():
    g, state, stack = graph(), {}, []
    def visit(m):
        state[m] = 'open'; stack.append(m)
        for d in sorted(g.get(m, ())):
            if state.get(d) == 'open': raise AssertionError('import cycle: ' + ' -> '.join(stack[stack.index(d):] + [d]))
            if d not in state: visit(d)
        state[m] = 'done'; stack.pop()
    for m in sorted(g):
        if m not in state: visit(m)

def test_the_detector_sees_a_cycle(tmp_path, monkeypatch):
    "the cycle check itself can fail"
    g = {'recsys_nb.a': {'recsys_nb.b'}, 'recsys_nb.b': {'recsys_nb.a'}}
    monkeypatch.setattr(__import__(__name__), 'graph', lambda: g)
    import pytest
    with pytest.raises(AssertionError, match='import cycle'): test_no_import_cycle()

def test_layers():
    g = graph()
    low = {'recsys_nb.core', 'recsys_nb.data', 'recsys_nb.metrics'}
    for m in low: assert not g[m] - low, f'{m} imports {g[m] - low}'
    tasks = {'recsys_nb.retrieval', 'recsys_nb.cmn', 'recsys_nb.seqrec', 'recsys_nb.ner', 'recsys_nb.purchase'}
    for m in ('recsys_nb.registry', 'recsys_nb.results', 'recsys_nb.runner', 'recsys_nb.nbtools'):
        assert not g[m] & (tasks | {'recsys_nb.cli'}), f'{m} imports {g[m] & (tasks | {"recsys_nb.cli"})}'
    assert not any('recsys_nb.cli' in deps for deps in g.values())              # nothing imports the command line
    workers = {'recsys_nb.cli', 'recsys_nb.retrieval_scale'}   # the one command line; the torchrun worker entry (`torchrun -m`)
    assert all(('def main(' not in (PKG/f'{m.split(".")[1]}.py').read_text()) for m in g if m not in workers), \
        'a second command line outside recsys_nb.cli'
