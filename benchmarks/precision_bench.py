#!/usr/bin/env python
"""Does bf16 autocast pay on this machine, task by task? The task's demo preset (`quick` in nbs/tasks/tasks.yaml), fold 0,
run through the runner with `precision` fp32 and then bf16 (alternating, `--repeat` times, so both see the same machine
load): wall seconds of the fold, training seconds where the task reports them, and the task's primary metrics. A
precision earns the CPU default ("auto") only when it is faster at equal quality.

    python benchmarks/precision_bench.py --tasks ner        # -> benchmarks/results/precision_<device>.json (merged per task)

cmn and seqrec have their own step-level measurement (`cmn_bench.py --speed`, `seqrec_precision_bench.py`); retrieval
encoding is measured in `retrieval_bench.py`.
"""
import argparse, json, shlex, sys, tempfile, time, datetime as dt
from pathlib import Path
from recsys_nb.core import save_json, load_json, machine_info
from recsys_nb.registry import load_registry
from recsys_nb.runner import run_task

def train_seconds(m:dict)->float|None:
    "Training seconds as the task's metrics.json reports them (ner: per-epoch train_seconds; cmn: seconds; seqrec: history)"
    if isinstance(m.get('seconds'), dict): return float(sum(m['seconds'].values()))
    h = m.get('history')
    if isinstance(h, list) and h and 'train_seconds' in h[0]: return float(sum(x['train_seconds'] for x in h))
    if isinstance(h, dict): return float(sum(x['seconds'] for v in h.values() for x in v))
    return None

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--tasks', nargs='+', default=['ner']); ap.add_argument('--repeat', type=int, default=1)
    ap.add_argument('--device', default='cpu'); ap.add_argument('--out', default='')
    a = ap.parse_args(argv)
    reg = load_registry()
    path = Path(a.out or Path(__file__).parent/'results'/f'precision_{a.device}.json')
    res = load_json(path) if path.exists() else {}
    for task in a.tasks:
        quick, primary = dict(reg[task].get('quick') or {}), reg[task].get('primary') or []
        m0, runs = machine_info(a.device), {'fp32': [], 'bf16': []}
        for _ in range(a.repeat):
            for p in runs:
                t = time.perf_counter()
                r = run_task(task, folds=[0], params={**quick, 'precision': p}, device=a.device, out=tempfile.mkdtemp())
                if not r.ok: raise SystemExit('\n'.join(r.errors))
                m = r.metrics[0]
                runs[p].append({'wall_seconds': time.perf_counter() - t, 'train_seconds': train_seconds(m),
                                'metrics': {name: {k: v for k, v in mm.items() if k in primary} for name, mm in m['models'].items()}})
                print(task, p, json.dumps(runs[p][-1]), flush=True)
        best = {p: min(x['train_seconds'] or x['wall_seconds'] for x in rs) for p, rs in runs.items()}
        res[task] = {'preset': quick, 'fold': 0, 'runs': runs, 'bf16_speedup_train': best['fp32'] / best['bf16'],
                     'command': 'python ' + shlex.join(['benchmarks/precision_bench.py', *(argv if argv is not None else sys.argv[1:])]),
                     'machine_start': m0, 'machine_end': machine_info(a.device),
                     'date': dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}
        print(task, 'bf16 speed-up (training):', round(res[task]['bf16_speedup_train'], 3), flush=True)
        save_json(res, path)
    print('wrote', path)

if __name__ == '__main__': main()
