#!/usr/bin/env python
"""Does bf16 autocast pay for seqrec training on this CPU? The same SASRec/BERT4Rec training steps (same initial
weights, same batches of ml-1m at the recipe's size) in fp32 and in bf16, interleaved in blocks so that both see the same
machine load: seconds per step and the loss reached.

    python benchmarks/seqrec_precision_bench.py --steps 60

Writes benchmarks/results/seqrec_precision_<device>.json.
"""
import argparse, copy, json, sys, time, datetime as dt
from pathlib import Path
import numpy as np, torch
from recsys_nb.core import save_json, get_device, seed_everything, machine_info, autocast
from recsys_nb.seqrec import load_seqrec_data, SeqRecModel, ModelConfig, TrainConfig, seq_loss, pad_left, length_buckets

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--steps', type=int, default=60); ap.add_argument('--block', type=int, default=10)
    ap.add_argument('--batch-size', type=int, default=32); ap.add_argument('--device', default='cpu'); ap.add_argument('--out', default='')
    a = ap.parse_args(argv)
    dev = get_device(a.device); m0 = machine_info(dev)
    data, _ = load_seqrec_data('ml-1m', n_positions=200, min_item_cnt=5, min_seq_len=5, n_folds=1, max_val_users=0)
    batches = length_buckets(data.train.lengths, a.batch_size, np.random.default_rng(0))[:a.steps]
    out = {}
    for kind in ('sasrec', 'bert4rec'):
        seed_everything(0); base = SeqRecModel(len(data.vocab), ModelConfig(kind))
        runs = {p: {'model': copy.deepcopy(base).to(dev).train(), 'seconds': 0.0, 'losses': []} for p in ('fp32', 'bf16')}
        for r in runs.values(): r['opt'] = torch.optim.AdamW(r['model'].parameters(), lr=1e-3)
        tc = TrainConfig()
        for s in range(0, len(batches), a.block):
            for p, r in runs.items():
                gen = torch.Generator().manual_seed(s)
                for b in batches[s:s + a.block]:
                    ids = pad_left(data.train, b, 200 + (kind == 'sasrec')).to(dev)
                    t = time.perf_counter()
                    with autocast(dev, p): loss = seq_loss(r['model'], ids, tc, gen)
                    r['opt'].zero_grad(); loss.backward(); r['opt'].step(); r['seconds'] += time.perf_counter() - t
                    r['losses'].append(loss.item())
        out[kind] = {p: {'seconds_per_step': r['seconds'] / len(batches), 'loss_last_10_steps': float(np.mean(r['losses'][-10:]))}
                     for p, r in runs.items()}
        out[kind]['bf16_speedup'] = out[kind]['fp32']['seconds_per_step'] / out[kind]['bf16']['seconds_per_step']
        print(kind, out[kind], flush=True)
    res = {'task': 'seqrec', 'benchmark': f'fp32 vs bf16 autocast training steps, ml-1m, 200 positions, batch {a.batch_size}, {len(batches)} steps',
           'models': out, 'command': 'python benchmarks/seqrec_precision_bench.py ' + ' '.join(argv or sys.argv[1:]),
           'machine_start': m0, 'machine_end': machine_info(dev), 'date': dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}
    path = Path(a.out or Path(__file__).parent/'results'/f'seqrec_precision_{dev.type}.json'); save_json(res, path); print('wrote', path)

if __name__ == '__main__': main()
