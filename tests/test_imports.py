"The package's import graph (every `import`, also inside functions): no cycle, and the layers import downwards only"
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent/'recsys_nb'
TASKS = {'retrieval', 'retrieval_scale', 'cmn', 'seqrec', 'ner', 'purchase'}

def import_graph(pkg:Path=PKG)->dict[str, set[str]]:
    "module -> the package modules it imports"
    mods, g = {p.stem for p in pkg.glob('*.py') if not p.stem.startswith('_')}, {}
    for m in mods:
        deps = set()
        for n in ast.walk(ast.parse((pkg/f'{m}.py').read_text())):
            if isinstance(n, ast.ImportFrom):
                parts = ([n.module] if n.module else []) if n.level else ([n.module] if n.module and n.module.startswith('recsys_nb') else [])
                for mod in parts:
                    mod = mod.removeprefix('recsys_nb').lstrip('.')
                    deps |= {mod.split('.')[0]} if mod else {a.name for a in n.names}
                if n.level and not n.module: deps |= {a.name for a in n.names}
            elif isinstance(n, ast.Import):
                deps |= {a.name.split('.')[1] for a in n.names if a.name.startswith('recsys_nb.')}
        g[m] = (deps & mods) - {m}
    return g

def find_cycle(g:dict)->list|None:
    "One cycle of `g` as a list of modules, or None"
    state, stack = {}, []
    def visit(m):
        state[m] = 1; stack.append(m)
        for d in sorted(g[m]):
            if state.get(d) == 1: return stack[stack.index(d):] + [d]
            if d not in state and (c := visit(d)): return c
        state[m] = 2; stack.pop(); return None
    for m in sorted(g):
        if m not in state and (c := visit(m)): return c
    return None

def test_no_import_cycle():
    g = import_graph()
    assert {'core', 'train', 'runner', 'cli', 'seqrec'} <= set(g)
    assert find_cycle(g) is None, f'import cycle: {" -> ".join(find_cycle(g))}'

def test_the_cycle_check_can_fail():
    assert find_cycle({'runner': {'nbtools'}, 'nbtools': {'runner'}}) == ['nbtools', 'runner', 'nbtools']

def test_layers():
    g = import_graph()
    for low in ('core', 'data', 'metrics', 'train'):
        assert not g[low] & TASKS, f'{low} imports a task module: {g[low] & TASKS}'
    assert g['train'] <= {'core'}
    for m in ('runner', 'registry', 'results'):
        assert not g[m] & TASKS, f'{m} imports a task module'
