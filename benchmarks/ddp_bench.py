"""Epoch time of the training core on 1 vs 2 processes (DistributedDataParallel, gloo on CPU) at the same global batch:
SASRec on MovieLens-100k leave-one-out (seqrec), and the same run's metrics, so the speed figure comes with a check that
both runs learned the same model.

    flock /tmp/recsys_cpu.lock python benchmarks/ddp_bench.py      # -> benchmarks/results/ddp_seqrec_cpu.json
"""
import argparse, json, sys, time, warnings
from pathlib import Path
import numpy as np
import torch
from recsys_nb.core import machine_info, save_json, seed_everything
from recsys_nb.seqrec import load_seqrec_data, run_seqrec, ModelConfig, TrainConfig
from recsys_nb.train import launch

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--source', default='ml-100k'); ap.add_argument('--epochs', type=int, default=3)
    ap.add_argument('--batch-size', type=int, default=128); ap.add_argument('--hidden', type=int, default=64)
    ap.add_argument('--threads', type=int, default=2, help='CPU threads in all: 1 process gets them all, n processes share them')
    ap.add_argument('--out', default=str(Path(__file__).parent/'results'/'ddp_seqrec_cpu.json'))
    a = ap.parse_args()
    warnings.filterwarnings('ignore')
    data, _ = load_seqrec_data(a.source, n_positions=50, max_val_users=300, n_folds=4)
    mc = ModelConfig(hidden_size=a.hidden, n_positions=50, dropout=0.0)   # dropout off: both runs see the same numbers
    tc = TrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=3e-3, precision='fp32')
    runs = {}
    for nproc in (1, 2):
        torch.set_num_threads(a.threads); seed_everything(0)
        t0 = time.perf_counter()
        r = launch(run_seqrec, nproc, data, ['sasrec'], mc, tc, device='cpu', seed=0, verbose=False, threads=a.threads // nproc)
        h = r['history']['sasrec']
        runs[nproc] = {'nproc': nproc, 'threads_per_process': a.threads // nproc, 'wall_seconds': time.perf_counter() - t0,
                       'epoch_seconds': [x['seconds'] for x in h], 'epoch_seconds_after_first': float(np.mean([x['seconds'] for x in h[1:]])),
                       'loss': [x['loss'] for x in h], 'test': {k: v for k, v in r['metrics']['sasrec'].items() if 'seconds' not in k}}
        print(json.dumps(runs[nproc]), flush=True)
    one, two = runs[1], runs[2]
    res = {'what': f'seqrec SASRec on {a.source}, {a.epochs} epochs, global batch {a.batch_size}, hidden {a.hidden}, fp32, '
                   f'dropout 0; 1 process x {a.threads} threads vs 2 processes x {a.threads // 2} (DDP, gloo)',
           'command': 'python benchmarks/ddp_bench.py ' + ' '.join(sys.argv[1:]),
           'machine': machine_info('cpu'), 'data': data.info, 'runs': [one, two],
           'speedup_epoch_2_vs_1': one['epoch_seconds_after_first'] / two['epoch_seconds_after_first'],
           'max_abs_diff_test_metric': max(abs(one['test'][k] - two['test'][k]) for k in one['test']),
           'max_rel_diff_loss': max(abs(x - y) / abs(x) for x, y in zip(one['loss'], two['loss']))}
    save_json(res, a.out); print(json.dumps({k: v for k, v in res.items() if k not in ('runs', 'data', 'machine')}, indent=1))

if __name__ == '__main__': main()
