#!/usr/bin/env python
"""Epoch time of recsys_nb's SASRec against RecBole 1.2.1's SASRec, same configuration, measured in one run.

    python -m venv --system-site-packages /tmp/rbvenv
    /tmp/rbvenv/bin/pip install "recbole==1.2.1" "numpy<2" "pandas<2.3" "scipy<1.15" colorlog==4.7.2 colorama==0.4.4 \
        tensorboard thop tabulate plotly texttable
    python benchmarks/seqrec_vs_recbole_bench.py --recbole-python /tmp/rbvenv/bin/python --data ml-100k

Configuration on both sides: 200 positions, hidden 64, 2 layers, 2 heads, inner 256, dropout 0.2, full softmax
cross-entropy, AdamW/Adam lr 1e-3, batch 128, CPU fp32. An epoch is one pass over every next-item target of the
training part: RecBole enumerates every prefix of every user as its own padded sequence and trains its last position;
recsys_nb trains every position of each user's sequence at once (causal attention), the same targets. recsys_nb is
also timed at its recipe's batch of 32 sequences. Writes benchmarks/results/seqrec_vs_recbole_<device>.json.
"""
import argparse, json, subprocess, sys, tempfile, time, datetime as dt
from pathlib import Path
import numpy as np
from recsys_nb.core import save_json, seed_everything, machine_info
from recsys_nb.data import movielens_folder
from recsys_nb.seqrec import load_seqrec_data, train_seqrec, SeqRecModel, ModelConfig, TrainConfig

HERE = Path(__file__).resolve().parent

def ours(data:str, batch_size:int, epochs:int)->dict:
    d, _ = load_seqrec_data(data, n_positions=200, min_item_cnt=0, min_seq_len=3, n_folds=1, max_val_users=0)
    seed_everything(0)
    m = SeqRecModel(len(d.vocab), ModelConfig('sasrec', hidden_size=64, n_layers=2, n_heads=2, dropout=0.2, n_positions=200))
    h = train_seqrec(m, d.train, TrainConfig(epochs=epochs, batch_size=batch_size, lr=1e-3, precision='fp32'), 'cpu', verbose=False)
    return {'epoch_seconds': [r['seconds'] for r in h], 'loss': [r['loss'] for r in h], 'batch_size': batch_size,
            'n_targets': int(sum(np.maximum(d.train.lengths - 1, 0)))}

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--recbole-python', required=True, help='python of a venv with recbole==1.2.1 and numpy<2')
    ap.add_argument('--data', default='ml-100k'); ap.add_argument('--epochs', type=int, default=1)
    ap.add_argument('--out', default='')
    a = ap.parse_args(argv)
    m0 = machine_info('cpu'); folder, _ = movielens_folder(a.data)
    t = time.perf_counter()
    rb = subprocess.run([a.recbole_python, str(HERE/'recbole'/'recbole_sasrec_epoch.py'), a.data, str(folder.parent), str(a.epochs)],
                        capture_output=True, text=True, cwd=tempfile.mkdtemp())   # RecBole writes log folders into its cwd
    if rb.returncode: sys.exit(f'RecBole failed:\n{rb.stderr[-3000:]}')
    rec = json.loads(rb.stdout.strip().splitlines()[-1]); rec['wall_seconds'] = time.perf_counter() - t
    o128, o32 = ours(a.data, 128, a.epochs), ours(a.data, 32, a.epochs)
    rb_s, o_s = float(np.mean(rec['recbole_epoch_seconds'])), float(np.mean(o128['epoch_seconds']))
    out = {'task': 'seqrec', 'benchmark': f'SASRec training epoch on {a.data}, recsys_nb vs RecBole 1.2.1, same configuration, one run',
           'recbole': rec, 'recsys_nb_batch128': o128, 'recsys_nb_recipe_batch32': o32,
           'recbole_epoch_seconds': rb_s, 'recsys_nb_epoch_seconds': o_s, 'speedup': rb_s / o_s,
           'speedup_recipe_batch32': rb_s / float(np.mean(o32['epoch_seconds'])),
           'command': 'python benchmarks/seqrec_vs_recbole_bench.py ' + ' '.join(argv or sys.argv[1:]),
           'machine_start': m0, 'machine_end': machine_info('cpu'), 'date': dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}
    path = Path(a.out or HERE/'results'/'seqrec_vs_recbole_cpu.json'); save_json(out, path)
    print(json.dumps({k: out[k] for k in ('recbole_epoch_seconds', 'recsys_nb_epoch_seconds', 'speedup', 'speedup_recipe_batch32')}), '\nwrote', path)

if __name__ == '__main__': main()
