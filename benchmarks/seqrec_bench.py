#!/usr/bin/env python
"""BERT4Rec and SASRec on MovieLens-1M, leave-one-out, full ranking: epoch time and HR@10 / NDCG@10.

    python benchmarks/seqrec_bench.py --device auto --epochs 3                 # what was run on the CPU here
    python benchmarks/seqrec_bench.py --device cuda --epochs 200 --n-positions 200 --hidden 64 --batch-size 256 \
        --out benchmarks/results/seqrec_ml-1m_gpu.json                          # the published-replication setting

Writes benchmarks/results/seqrec_ml-1m_<device>.json (device named inside).
"""
import argparse, json, os, platform, time, datetime as dt
from pathlib import Path
import numpy as np, torch
from recsys_nb.core import save_json, get_device, seed_everything
from recsys_nb.seqrec import load_seqrec_data, run_seqrec, ModelConfig, TrainConfig

# Published replications on ml-1m, leave-one-out, full ranking (HR@10, NDCG@10):
REFERENCE = {'bert4rec': {'hr@10': 0.28, 'ndcg@10': 0.15, 'source': 'Petrov & Macdonald, RecSys 2022 replicability study (approx.)'},
             'sasrec': {'hr@10': 0.31, 'ndcg@10': 0.18, 'source': 'Klenitskiy & Vasilev, RecSys 2023, SASRec with cross-entropy (approx.)'}}

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--device', default='auto'); ap.add_argument('--data', default='ml-1m'); ap.add_argument('--data-dir', default='')
    ap.add_argument('--models', default='bert4rec,sasrec'); ap.add_argument('--epochs', type=int, default=3)
    ap.add_argument('--max-steps', type=int, default=0); ap.add_argument('--n-positions', type=int, default=50)
    ap.add_argument('--hidden', type=int, default=64); ap.add_argument('--layers', type=int, default=2); ap.add_argument('--heads', type=int, default=2)
    ap.add_argument('--dropout', type=float, default=0.1); ap.add_argument('--batch-size', type=int, default=128)
    ap.add_argument('--lr', type=float, default=1e-3); ap.add_argument('--mask-prob', type=float, default=0.2)
    ap.add_argument('--precision', default='auto'); ap.add_argument('--max-val-users', type=int, default=500)
    ap.add_argument('--seed', type=int, default=42); ap.add_argument('--out', default='')
    a = ap.parse_args(argv)
    seed_everything(a.seed); device = get_device(a.device)
    load0 = os.getloadavg() if hasattr(os, 'getloadavg') else None
    t0 = time.perf_counter()
    data, _ = load_seqrec_data(a.data, a.data_dir, n_positions=a.n_positions, min_item_cnt=5, min_seq_len=5, n_folds=1,
                               seed=a.seed, max_val_users=a.max_val_users)
    prep_s = time.perf_counter() - t0
    mc = ModelConfig(hidden_size=a.hidden, n_layers=a.layers, n_heads=a.heads, dropout=a.dropout, n_positions=a.n_positions)
    tc = TrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, max_steps=a.max_steps, mask_prob=a.mask_prob, precision=a.precision)
    res = run_seqrec(data, a.models.split(','), mc, tc, device=device, seed=a.seed, exclude_seen=True)
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else f'cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)'
    out = {
        'task': 'seqrec', 'benchmark': f'{a.data} leave-one-out, full ranking over {data.vocab.n_items} items, seen items excluded',
        'date': dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds'), 'device': name, 'device_type': device.type,
        'torch': torch.__version__, 'load_average_start_end': [load0, os.getloadavg() if hasattr(os, 'getloadavg') else None], 'args': vars(a), 'data': data.info, 'prepare_seconds': prep_s,
        'models': {m: {**{k: v for k, v in met.items()},
                       'epoch_seconds_each': [h['seconds'] for h in res['history'].get(m, [])],
                       'epochs_run': len(res['history'].get(m, [])), 'steps': sum(h['steps'] for h in res['history'].get(m, [])),
                       'history': res['history'].get(m, [])} for m, met in res['metrics'].items()},
        'reference': REFERENCE,
        'note': ('CPU run at a size that fits a shared 2-core machine: few epochs, far from convergence, so HR/NDCG are well below '
                 'the published figures (which need ~100-200 epochs); epoch times are the useful number here.') if device.type == 'cpu' else '',
        'gpu': 'not measured: no GPU this session' if device.type != 'cuda' else 'measured',
    }
    path = Path(a.out or Path(__file__).parent/'results'/f'seqrec_{a.data}_{device.type}.json')
    save_json(out, path); print(json.dumps({m: {k: v for k, v in d.items() if k != 'history'} for m, d in out['models'].items()}, indent=1)); print('wrote', path)

if __name__ == '__main__': main()
