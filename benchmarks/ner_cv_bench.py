"""SOMD 2025 phase I, 4-fold CV of the `ner` pipeline on this machine's CPU, and the fold-0 sweep behind its defaults.

Every number comes from the pipeline notebook nbs/tasks/ner.ipynb run by the runner (papermill), with its defaults
plus the overrides given; each command handles one fold, so each can take the shared CPU lock on its own:

    flock /tmp/recsys_cpu.lock python benchmarks/ner_cv_bench.py fold 0      # ... 1, 2, 3: the recipe (notebook defaults)
    flock /tmp/recsys_cpu.lock python benchmarks/ner_cv_bench.py sweep NAME -p epochs 6 -p case_feature False ...
    flock /tmp/recsys_cpu.lock python benchmarks/ner_cv_bench.py variant NAME --fold 1 -p loss_weighting token   # a variant on every fold

`fold` records the fold under "folds" (and recomputes the means), `sweep` records fold 0 with the overrides under
"sweep.NAME", `variant` records fold --fold with the overrides under "variants.NAME.folds" with the variant's means and its
gain over the recipe on the same folds, in benchmarks/results/ner_somd_cv_cpu.json. Runs go to outputs/ner_bench/ (git-ignored). The learning
curves of the recorded folds and sweep entries (span F1 on the evaluated fold per epoch) are drawn from the JSON by

    python benchmarks/ner_cv_bench.py plot       # -> benchmarks/results/ner_somd_cv_cpu_curves.png
"""
import argparse, datetime as dt, json, os, platform, shlex, sys, time
from pathlib import Path
import numpy as np

RESULT = Path(__file__).parent/'results'/'ner_somd_cv_cpu.json'

def _machine()->dict:
    from recsys_nb.core import machine_info
    return machine_info('cpu')

def _summary(m:dict, hist:list)->dict:
    "What the JSON keeps of one fold's metrics.json"
    ner, gaz = m['models']['ner'], m['models']['gazetteer']
    keep = lambda s: {k: v for k, v in s.items() if not k.startswith(('token_', 'span_support-'))}
    return {'span_f1': ner['span_f1'], 'gazetteer_span_f1': gaz['span_f1'], 'margin_over_gazetteer': ner['span_f1'] - gaz['span_f1'],
            'unseen_recall': ner.get('unseen_recall'), 'seen_recall': ner.get('seen_recall'), 'n_unseen': ner.get('n_unseen'),
            'n_seen': ner.get('n_seen'), 'gazetteer_unseen_recall': gaz.get('unseen_recall'), 'token_f1': ner['token_f1'],
            'ner': keep(ner), 'gazetteer': keep(gaz), 'best_epoch': m['best_epoch'], 'epochs_run': len(hist),
            'train_minutes': round(m['train_seconds'] / 60, 3),
            'curve': [{k: round(h[k], 4) if isinstance(h[k], float) else h[k] for k in
                       ('epoch', 'train_loss', 'eval_loss', 'span_f1', 'span_f1_argmax', 'span_f1_threshold', 'span_f1_viterbi', 'train_seconds') if k in h}
                      for h in hist]}

def _means(folds:dict)->dict:
    f = [folds[k] for k in sorted(folds)]
    mean = lambda k: float(np.mean([x[k] for x in f]))
    out = {'n_folds': len(f), 'span_f1_mean': mean('span_f1'), 'span_f1_std': float(np.std([x['span_f1'] for x in f])),
           'gazetteer_span_f1_mean': mean('gazetteer_span_f1'), 'min_margin_over_gazetteer': min(x['margin_over_gazetteer'] for x in f),
           'unseen_recall_mean': mean('unseen_recall'), 'seen_recall_mean': mean('seen_recall'),
           'train_minutes_mean': mean('train_minutes'), 'train_minutes_max': max(x['train_minutes'] for x in f)}
    types = sorted({k for x in f for k in x['ner'] if k.startswith('span_f1-')})
    out['per_type_span_f1_mean'] = {t[len('span_f1-'):]: float(np.mean([x['ner'].get(t, 0.0) for x in f])) for t in types}
    out['gazetteer_per_type_span_f1_mean'] = {t[len('span_f1-'):]: float(np.mean([x['gazetteer'].get(t, 0.0) for x in f])) for t in types}
    return out

def run(fold:int, overrides:dict, out:str)->tuple[dict, dict]:
    from recsys_nb.runner import run_task
    from recsys_nb.core import load_json
    from recsys_nb.core import machine_info
    m0, t0 = machine_info('cpu'), time.perf_counter()
    res = run_task('ner', [fold], overrides, out=out, from_text=True)
    if not res.ok: raise SystemExit('\n'.join(res.errors))
    d = res.run_dir/f'fold_{fold}'
    m = load_json(d/'metrics.json')
    rec = _summary(m, m['history']) | {'run_dir': str(d), 'wall_minutes': round((time.perf_counter() - t0) / 60, 3),
                                       'machine_start': m0, 'machine_end': machine_info('cpu'),
                                       'date': dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}
    return rec, load_json(res.run_dir/'run.json')

def sweep_table(res:dict)->list[dict]:
    "One row per sweep entry: its overrides and the last epoch's span F1 under each decoder"
    rows = []
    for name, f in res.get('sweep', {}).items():
        last = f['curve'][-1]
        rows.append({'name': name, 'overrides': {k: v for k, v in f['overrides'].items() if k not in ('save_model', 'predict_test')},
                     'epochs': last['epoch'], **{k: last.get(k) for k in ('span_f1_viterbi', 'span_f1_argmax', 'span_f1_threshold')},
                     'unseen_recall': f['unseen_recall'], 'seen_recall': f['seen_recall'], 'train_minutes': f['train_minutes']})
    return rows

def plot(path:Path)->Path:
    "Span F1 per epoch of every recorded fold (left) and sweep entry (right), with the gazetteer of each fold dotted"
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    from recsys_nb.core import load_json
    res = load_json(path)
    fig, axs = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for k, f in sorted(res.get('folds', {}).items()):
        ep = [h['epoch'] for h in f['curve']]
        l, = axs[0].plot(ep, [h['span_f1'] for h in f['curve']], 'o-', label=f'fold {k} ({f["span_f1"]:.3f})')
        axs[0].axhline(f['gazetteer_span_f1'], ls=':', color=l.get_color())
    axs[0].set_title('recipe (defaults), 4 folds; dotted: gazetteer'); axs[0].set_ylabel('span F1 on the evaluated fold')
    for name, f in res.get('sweep', {}).items():
        ep = [h['epoch'] for h in f['curve']]
        axs[1].plot(ep, [h.get('span_f1_viterbi', h['span_f1']) for h in f['curve']], 'o-', ms=3, label=name)
    axs[1].set_title('fold-0 sweep (Viterbi decoding)')
    for a in axs: a.set_xlabel('epoch'); a.set_ylim(0.4, 0.95); a.grid(alpha=.3); a.legend(fontsize=7)
    fig.tight_layout(); out = path.with_name(path.stem + '_curves.png'); fig.savefig(out, dpi=100); plt.close(fig)
    return out

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('mode', choices=['fold', 'sweep', 'variant', 'plot']); ap.add_argument('name', nargs='?', default='', help='fold number (fold), or the entry name (sweep, variant)')
    ap.add_argument('-p', '--param', nargs=2, action='append', default=[], metavar=('NAME', 'VALUE'))
    ap.add_argument('--note', default=''); ap.add_argument('--out', default='outputs/ner_bench')
    ap.add_argument('--result', default=str(RESULT)); ap.add_argument('--fold', type=int, default=0, help='variant: the fold to run')
    a = ap.parse_args(argv)
    os.environ.setdefault('RECSYS_NB_PROGRESS', '0')
    from recsys_nb.core import save_json, load_json
    if a.mode == 'plot':
        res = load_json(a.result); res['sweep_table'] = sweep_table(res); save_json(res, a.result)
        print('wrote', plot(Path(a.result))); return
    overrides = dict(a.param)
    if a.mode == 'fold' and overrides: raise SystemExit('fold mode runs the notebook defaults (the recipe): no -p overrides')
    if a.mode == 'variant' and not overrides: raise SystemExit('variant mode needs -p overrides (without them it is the recipe: use fold)')
    fold = int(a.name) if a.mode == 'fold' else a.fold if a.mode == 'variant' else 0
    rec, info = run(fold, overrides, a.out)
    rec['command'] = 'flock /tmp/recsys_cpu.lock python benchmarks/ner_cv_bench.py ' + ' '.join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    rec['overrides'] = overrides; rec['git_commit'] = info.get('git_commit')
    if a.note: rec['note'] = a.note
    path = Path(a.result)
    res = load_json(path) if path.exists() else {}
    res.setdefault('task', 'SOMD 2025 phase I software-mention NER, strict span F1 (exact type and boundaries), 4 folds (sentence i in fold i % 4)')
    res.setdefault('model', 'all-MiniLM-L6-v2 (offline, uncased) + token classification head')
    res['machine'] = _machine()
    if a.mode == 'fold':
        res.setdefault('folds', {})[str(fold)] = rec
        res['recipe_params'] = info['params']
        res['summary'] = _means(res['folds'])
        res['commands'] = [f'flock /tmp/recsys_cpu.lock python benchmarks/ner_cv_bench.py fold {k}' for k in range(4)]
        res['equivalent_runner_command'] = 'recsys-nb run ner --folds 0,1,2,3'
    elif a.mode == 'variant':
        v = res.setdefault('variants', {}).setdefault(a.name, {'overrides': overrides, 'folds': {}})
        if v['overrides'] != overrides: raise SystemExit(f'variant {a.name} was recorded with {v["overrides"]}, not {overrides}: pick another name')
        v['folds'][str(fold)] = rec; v['summary'] = _means(v['folds'])
        both = sorted(set(v['folds']) & set(res.get('folds', {})))
        gain = [v['folds'][k]['span_f1'] - res['folds'][k]['span_f1'] for k in both]
        v['span_f1_gain_over_recipe'] = {'folds': dict(zip(both, gain)), 'mean': float(np.mean(gain)) if gain else None,
                                         'min': min(gain) if gain else None}
    else:
        res.setdefault('sweep', {})[a.name] = rec
        res['sweep_table'] = sweep_table(res)
    save_json(res, path)
    print(json.dumps({k: v for k, v in rec.items() if k not in ('ner', 'gazetteer')}, indent=1))
    if a.mode == 'fold': print(json.dumps(res['summary'], indent=1))

if __name__ == '__main__': main()
