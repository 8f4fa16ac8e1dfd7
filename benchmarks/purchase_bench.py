"""Purchase task: local engine (polars + LightGBM) vs Spark engine (Spark DataFrames + MLlib GBT), end to end on one fold.

    python benchmarks/purchase_bench.py --device auto --dataset ml-1m [--users 0] [--cv-folds 0] [--out benchmarks/results/purchase_ml1m.json]

Both engines get the same rows, features (tested identical), GBT settings and fold; the JSON records wall time per
stage, ROC AUC / log loss of both and of the item-rate baseline, and the Spark / local time ratio. Both engines are CPU
code (LightGBM's CPU build, Spark local mode): `--device` is recorded only.
"""
import argparse, os, platform, sys, time
from pathlib import Path
import polars as pl
from recsys_nb.core import save_json, machine_info
from recsys_nb.purchase import purchase_data, run_purchase, PurchaseData


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--device', default='auto', help='recorded only: both engines run on CPU')
    ap.add_argument('--dataset', default='ml-1m', help='ml-1m, ml-100k or synthetic')
    ap.add_argument('--data-dir', default='', help='a folder in the lab layout instead of --dataset')
    ap.add_argument('--users', type=int, default=0, help='keep only the users with the N smallest ids (0 = all)')
    ap.add_argument('--engines', default='local,spark')
    ap.add_argument('--cv-folds', type=int, default=0, help='inner CV folds of the grid search (0 = fixed lab best point)')
    ap.add_argument('--n-trees', type=int, default=20)
    ap.add_argument('--top-items', type=int, default=500)
    ap.add_argument('--spark-master', default='local[*]')
    ap.add_argument('--spark-driver-memory', default='6g')
    ap.add_argument('--seed', type=int, default=42)
    ap.add_argument('--out', default='')
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    data = purchase_data(a.data_dir, a.dataset, seed=a.seed)
    load_s = time.perf_counter() - t0
    if a.users:
        keep = data.train['user_id'].unique().sort().head(a.users)
        data = PurchaseData(data.train.filter(pl.col('user_id').is_in(keep.implode())), data.test.filter(pl.col('user_id').is_in(keep.implode())),
                            data.items, data.views, data.source + f' (first {a.users} users)')
    res = {'task': 'purchase', 'dataset': a.dataset if not a.data_dir else a.data_dir, 'users_subset': a.users or None,
           'data': data.summary(), 'load_and_convert_s': load_s, 'device_requested': a.device, 'device': 'cpu',
           'gpu': 'not applicable: both engines are CPU code (LightGBM CPU build, Spark local mode); no GPU this session',
           'machine_start': machine_info('cpu'),
           'settings': {'cv_folds': a.cv_folds, 'n_trees': a.n_trees, 'top_items': a.top_items, 'fold': 0, 'n_folds': 4,
                        'spark_master': a.spark_master, 'exclude_self': True}, 'engines': {}}
    for eng in a.engines.split(','):
        t = time.perf_counter()
        r = run_purchase(data, fold=0, n_folds=4, seed=a.seed, engine=eng, top_items=a.top_items, cv_folds=a.cv_folds, n_trees=a.n_trees,
                         spark_master=a.spark_master, spark_driver_memory=a.spark_driver_memory)
        res['engines'][eng] = {'wall_s': time.perf_counter() - t, 'timings_s': r.timings, 'metrics': r.metrics['models'],
                               'best_params': r.metrics['best_params'], 'top_features': r.importances.head(8).to_dicts()}
        print(eng, {k: round(v, 1) for k, v in r.timings.items()}, {m: round(v['roc_auc'], 4) for m, v in r.metrics['models'].items()}, flush=True)
    e = res['engines']
    if {'local', 'spark'} <= set(e):
        res['spark_over_local_wall'] = e['spark']['wall_s'] / e['local']['wall_s']
        res['auc_diff_spark_minus_local'] = e['spark']['metrics']['spark_mllib_gbt']['roc_auc'] - e['local']['metrics']['lightgbm_gbt']['roc_auc']
    res['machine_end'] = machine_info('cpu')
    out = Path(a.out or f'benchmarks/results/purchase_{a.dataset}{"_u" + str(a.users) if a.users else ""}.json')
    save_json(res, out); print('wrote', out, {k: v for k, v in res.items() if k in ('spark_over_local_wall', 'auc_diff_spark_minus_local')})


if __name__ == '__main__': main()
