"""Retrieval quality on Cranfield, 4-fold query CV: the pipeline notebook (nbs/tasks/retrieval.ipynb) run with its
default parameters - the recipe - once per fold; per model (zero-shot all-MiniLM-L6-v2, the fine-tuned encoder,
BM25, hybrid RRF, hybrid linear) NDCG@10, Recall@100, MRR@10 and PFound (the competition's and Yandex's), per fold
and mean, the fine-tuning history (validation NDCG@10 per epoch, kept epoch, minutes) and an optional learning-rate
sweep on one fold.

    python benchmarks/retrieval_quality_bench.py                        # the 4 folds -> benchmarks/results/retrieval_quality_cranfield.json
    python benchmarks/retrieval_quality_bench.py --folds 0,1 --merge    # some folds, merged into the existing file
    python benchmarks/retrieval_quality_bench.py --sweep-lr 2e-5,1e-4 --sweep-fold 0 --merge   # sweep rows (fold 0)
    python benchmarks/retrieval_quality_bench.py --sweep 'lr=1e-4,epochs=8;doc_encoder=frozen,corpus_loss=1,pair_loss=0' --merge
                                                                        # sweep rows: any parameter overrides, one run each

Every fold is a separate papermill run (outputs/bench/retrieval-quality/...); the epoch is chosen on validation
queries inside the training folds, never on the evaluated fold.
"""
import argparse, json, os, platform, sys, time
from pathlib import Path
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
NAMES = {'dense_zero_shot': 'zero_shot', 'dense': 'fine_tuned', 'bm25': 'bm25', 'hybrid_rrf': 'hybrid_rrf', 'hybrid_linear': 'hybrid_linear'}
METRICS = ('ndcg@10', 'recall@100', 'mrr@10', 'pfound', 'pfound_yandex')


def run_fold(fold, params, out):
    from recsys_nb.runner import run_task
    t0 = time.perf_counter()
    res = run_task('retrieval', folds=[fold], params=params, out=out)
    if not res.ok: raise RuntimeError(f'fold {fold} failed: {res.errors}')
    return res.metrics[fold], (time.perf_counter() - t0) / 60, str(res.run_dir)


def summarise(folds:dict)->dict:
    "Per model and metric: folds (in fold order), mean, std"
    ks = sorted(folds, key=int); out = {}
    for src, name in NAMES.items():
        if not all(src in folds[k]['models'] for k in ks): continue
        out[name] = {m: {'folds': [folds[k]['models'][src][m] for k in ks]} for m in METRICS}
        for m in METRICS:
            v = np.array(out[name][m]['folds']); out[name][m].update(mean=float(v.mean()), std=float(v.std()))
    if 'zero_shot' in out and 'fine_tuned' in out:
        g = np.array(out['fine_tuned']['ndcg@10']['folds']) - np.array(out['zero_shot']['ndcg@10']['folds'])
        out['fine_tuning_gain_ndcg@10'] = {'folds': g.tolist(), 'mean': float(g.mean()), 'min': float(g.min())}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--folds', default='0,1,2,3'); p.add_argument('--merge', action='store_true', help='merge into the existing JSON')
    p.add_argument('--sweep-lr', default='', help='learning rates to run on --sweep-fold (instead of --folds)')
    p.add_argument('--sweep', default='', help="parameter sets to run on --sweep-fold, 'a=1,b=2;a=3' (on top of -p)")
    p.add_argument('--sweep-fold', type=int, default=0); p.add_argument('--out', default='')
    p.add_argument('--runs', default=str(ROOT/'outputs'/'bench'/'retrieval-quality'))
    p.add_argument('-p', nargs=2, action='append', default=[], metavar=('NAME', 'VALUE'), help='pipeline parameter override')
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import torch
    from recsys_nb.core import save_json, load_json, machine_info
    from recsys_nb.runner import task_params, resolve_params
    path = Path(args.out or ROOT/'benchmarks'/'results'/'retrieval_quality_cranfield.json')
    res = load_json(path) if args.merge and path.exists() else {}
    params = resolve_params('retrieval', dict(args.p), from_text=True)
    recipe = {k: v.default for k, v in task_params('retrieval').items() if k not in ('fold', 'out_dir')}
    m0 = machine_info('cpu')
    cmd = 'python ' + ' '.join([f'benchmarks/{Path(__file__).name}'] + (argv if argv is not None else sys.argv[1:]))
    res.update(dataset='cranfield (1400 documents, 180 training queries in 4 query folds; 45 held-out test queries unused here)',
               device='cpu', device_name=f'CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}',
               machine=machine_info('cpu'), recipe={**recipe, **params})
    res.setdefault('runs', []); res.setdefault('folds', {}); res.setdefault('sweep', {})
    if args.sweep:
        for spec in [x for x in args.sweep.split(';') if x.strip()]:
            over = dict(kv.split('=', 1) for kv in spec.split(','))
            sp = {**params, **resolve_params('retrieval', over, from_text=True)}
            m, minutes, run_dir = run_fold(args.sweep_fold, sp, args.runs)
            zs, ft = m['models']['dense_zero_shot']['ndcg@10'], m['models']['dense']['ndcg@10']; f = m['finetune']
            res['sweep'][f'fold{args.sweep_fold}_{spec}'] = {'fold': args.sweep_fold, 'params': sp, 'val_ndcg@10': f['val_ndcg@10'],
                'kept_epoch': f['best_epoch'], 'train_loss': f['train_loss'], 'finetune_minutes': f['minutes'],
                **{k: f[k] for k in ('wise_alpha', 'wise_val_ndcg@10', 'n_extra_pairs_per_epoch', 'n_distill_queries_per_epoch') if k in f},
                'test_ndcg@10_zero_shot': zs, 'test_ndcg@10_fine_tuned': ft, 'test_recall@100_fine_tuned': m['models']['dense']['recall@100'],
                'minutes': minutes, 'run_dir': run_dir, 'machine_end': machine_info('cpu')}
            print(f'sweep {spec}: val {np.round(f["val_ndcg@10"], 4)} kept {f["best_epoch"]}, WiSE-FT {f.get("wise_alpha", 1.0):g} ({f["minutes"]:.2f} min fine-tuning), '
                  f'fold {args.sweep_fold} NDCG@10 {zs:.4f} -> {ft:.4f}', flush=True)
            save_json(res, path)
    elif args.sweep_lr:
        for lr in args.sweep_lr.split(','):
            m, minutes, run_dir = run_fold(args.sweep_fold, {**params, 'lr': float(lr)}, args.runs)
            zs, ft = m['models']['dense_zero_shot']['ndcg@10'], m['models']['dense']['ndcg@10']
            res['sweep'][f'fold{args.sweep_fold}_lr{lr}'] = {'fold': args.sweep_fold, 'lr': float(lr), 'val_ndcg@10': m['finetune']['val_ndcg@10'],
                                                            'kept_epoch': m['finetune']['best_epoch'], 'test_ndcg@10_zero_shot': zs,
                                                            'test_ndcg@10_fine_tuned': ft, 'minutes': minutes, 'run_dir': run_dir}
            print(f'sweep lr {lr}: val {np.round(m["finetune"]["val_ndcg@10"], 4)}, fold {args.sweep_fold} NDCG@10 {zs:.4f} -> {ft:.4f}', flush=True)
    else:
        for f in [int(x) for x in args.folds.split(',')]:
            m, minutes, run_dir = run_fold(f, params, args.runs)
            res['folds'][str(f)] = {'models': m['models'], 'finetune': m.get('finetune', {}), 'fusion': m['fusion'], 'minutes': minutes,
                                    'run_dir': run_dir, 'n_eval_queries': m['n_eval_queries'], 'params': {**recipe, **params},
                                    'machine_end': machine_info('cpu')}
            print(f'fold {f}: ' + ', '.join(f'{NAMES.get(k, k)} {v["ndcg@10"]:.4f}' for k, v in m['models'].items()) + f' ({minutes:.1f} min)', flush=True)
            res['models'] = summarise(res['folds']); save_json(res, path)    # after every fold: a cut-off run keeps its folds
    res['runs'].append({'command': cmd, 'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
                        'machine_start': m0, 'machine_end': machine_info('cpu')})
    if res['folds']: res['models'] = summarise(res['folds']); res['minutes_per_fold'] = {k: v['minutes'] for k, v in res['folds'].items()}
    if len(res['folds']) >= res['recipe']['n_folds']: res.pop('pending', None)   # every fold measured with this recipe
    save_json(res, path); print('wrote', path)
    if 'models' in res:
        for n, v in res['models'].items():
            if 'ndcg@10' in v: print(f"{n:14s} NDCG@10 {v['ndcg@10']['mean']:.4f} +- {v['ndcg@10']['std']:.4f}  Recall@100 {v['recall@100']['mean']:.4f}")


if __name__ == '__main__': main()
