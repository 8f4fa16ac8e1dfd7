#!/usr/bin/env python
"""SASRec and BERT4Rec on MovieLens-1M, leave-one-out, full ranking over all items, seen items excluded: quality within
a CPU budget, with the learning curve (validation NDCG@10 against minutes of training).

    python benchmarks/seqrec_quality_bench.py --models sasrec,bert4rec --parallel   # both at once, one core each (what ran here)
    python benchmarks/seqrec_quality_bench.py --models sasrec            # one model per call; results merge into the JSON
    python benchmarks/seqrec_quality_bench.py --models sasrec --epochs 3 --batch-size 128 --tag bs128   # a sweep point

The recipe defaults are those of nbs/tasks/seqrec.ipynb. Protocol (SASRec/BERT4Rec papers): each user's last item is the
test target, the one before it the validation target (1,000 users, early stopping), the rest is training; every user
is tested (n_folds=1: the folds of the pipeline notebook only split the test users, training is the same).
Writes benchmarks/results/seqrec_ml-1m_quality_<device>.json.
"""
import argparse, json, sys, time, datetime as dt
from pathlib import Path
import numpy as np, torch, subprocess, tempfile
from recsys_nb.core import save_json, load_json, get_device, seed_everything, machine_info
from recsys_nb.seqrec import load_seqrec_data, run_seqrec, ModelConfig, TrainConfig

REFERENCE = {'sasrec': {'ndcg@10': 0.182, 'hr@10': 0.315, 'source': 'Klenitskiy & Vasilev, RecSys 2023 (SASRec+, full cross-entropy)'},
             'bert4rec': {'ndcg@10': 0.154, 'hr@10': 0.284, 'source': 'Klenitskiy & Vasilev, RecSys 2023'},
             'recbole_sasrec': {'ndcg@10': 0.129, 'source': 'RecBole, as quoted in issue 14'}}

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--models', default='sasrec'); ap.add_argument('--device', default='auto'); ap.add_argument('--data', default='ml-1m')
    ap.add_argument('--epochs', type=int, default=30); ap.add_argument('--max-minutes', type=float, default=45.0)
    ap.add_argument('--patience', type=int, default=0); ap.add_argument('--n-positions', type=int, default=200)
    ap.add_argument('--hidden', type=int, default=64); ap.add_argument('--layers', type=int, default=2); ap.add_argument('--heads', type=int, default=2)
    ap.add_argument('--dropout', type=float, default=0.2); ap.add_argument('--batch-size', type=int, default=32)
    ap.add_argument('--lr', type=float, default=1e-3); ap.add_argument('--bert4rec-lr', type=float, default=2e-3)
    ap.add_argument('--bert4rec-epochs', type=int, default=60)
    ap.add_argument('--weight-decay', type=float, default=TrainConfig.weight_decay, help='AdamW weight decay (recipe: TrainConfig default)')
    ap.add_argument('--mask-prob', type=float, default=0.4)
    ap.add_argument('--block', default=ModelConfig.block, help='transformer block: pre_ln (recipe) or sasrec (the original SASRec block)')
    ap.add_argument('--positions', default=ModelConfig.position_from, help="position embeddings counted from the 'end' (recipe) or the 'start' of the sequence")
    ap.add_argument('--loss-weighting', default=TrainConfig.loss_weighting, help="'batch' (mean loss per batch) or 'position' (every predicted position weighs the same)")
    ap.add_argument('--schedule', default=TrainConfig.schedule, help='learning rate after the warm-up: linear (recipe) or constant (SASRec+)')
    ap.add_argument('--precision', default='auto'); ap.add_argument('--max-val-users', type=int, default=1000)
    ap.add_argument('--command', default='', help=argparse.SUPPRESS)
    ap.add_argument('--seed', type=int, default=42); ap.add_argument('--tag', default='', help='store as a sweep point under this name')
    ap.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    ap.add_argument('--parallel', action='store_true', help='each model in its own process with 1 thread, at the same time')
    ap.add_argument('--out', default='')
    ap.add_argument('--plot', action='store_true', help='only draw the learning curves of the JSON (validation NDCG@10 against minutes) to a PNG beside it')
    a = ap.parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    if a.plot: return plot(Path(a.out or Path(__file__).parent/'results'/f'seqrec_{a.data}_quality_{get_device(a.device).type}.json'))
    if a.parallel: return parallel(a, argv)
    if a.threads: torch.set_num_threads(a.threads)
    seed_everything(a.seed); device = get_device(a.device); m0 = machine_info(device)
    path = Path(a.out or Path(__file__).parent/'results'/f'seqrec_{a.data}_quality_{device.type}.json')
    data, _ = load_seqrec_data(a.data, n_positions=a.n_positions, min_item_cnt=5, min_seq_len=5, n_folds=1, seed=a.seed,
                               max_val_users=a.max_val_users)
    mc = ModelConfig(hidden_size=a.hidden, n_layers=a.layers, n_heads=a.heads, dropout=a.dropout, n_positions=a.n_positions,
                     block=a.block, position_from=a.positions)
    tc = TrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, max_minutes=a.max_minutes, patience=a.patience,
                     mask_prob=a.mask_prob, precision=a.precision, weight_decay=a.weight_decay,
                     schedule=a.schedule, loss_weighting=a.loss_weighting)
    res = run_seqrec(data, a.models.split(','), mc, tc, device=device, seed=a.seed, exclude_seen=True,
                     train_overrides={'bert4rec': {'lr': a.bert4rec_lr, 'epochs': a.bert4rec_epochs}})
    out = load_json(path) if path.exists() else {}
    out.update({'task': 'seqrec', 'benchmark': f'{a.data} leave-one-out, full ranking over {data.vocab.n_items} items, seen items '
                f'excluded, all {data.info["n_users"]} users tested', 'data': data.info, 'reference': REFERENCE})
    out.setdefault('models', {}); out.setdefault('sweep', {})
    out['models']['popularity'] = {k: res['metrics']['popularity'][k] for k in ('ndcg@10', 'hr@10', 'recall@100', 'mrr@100')}
    for name in a.models.split(','):
        h = res['history'][name]; t = np.cumsum([r['seconds'] for r in h]) / 60
        row = {**{k: res['metrics'][name][k] for k in ('ndcg@10', 'hr@10', 'recall@100', 'mrr@100')},
               'train_minutes': float(t[-1]), 'epochs_run': len(h), 'best_epoch': next(r['epoch'] for r in h if r['best']),
               'epoch_seconds_mean': float(np.mean([r['seconds'] for r in h])),
               'curve': [{'epoch': r['epoch'], 'minutes': round(float(m), 2), 'loss': round(r['loss'], 4),
                          'val_ndcg@10': round(r['val_ndcg@10'], 4)} for r, m in zip(h, t)],
               'vs_popularity_ndcg@10': res['metrics'][name]['ndcg@10'] / res['metrics']['popularity']['ndcg@10'],
               'command': a.command if getattr(a, 'command', '') else 'python benchmarks/seqrec_quality_bench.py ' + ' '.join(argv),
               'args': vars(a), 'machine_start': m0, 'machine_end': machine_info(device),
               'date': dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}
        (out['sweep'] if a.tag else out['models'])[a.tag + ':' + name if a.tag else name] = row
        print(name, {k: v for k, v in row.items() if k not in ('curve', 'args', 'machine_start', 'machine_end')})
    save_json(out, path); print('wrote', path)

def parallel(a, argv):
    "Run each model of `a.models` in its own process (1 thread), concurrently; merge their rows into the JSON"
    rest = [x for x in argv if x != '--parallel']
    i = rest.index('--models') if '--models' in rest else None
    if i is not None: del rest[i:i + 2]
    cmd = 'python benchmarks/seqrec_quality_bench.py ' + ' '.join(argv)
    tmp = Path(tempfile.mkdtemp()); procs = []
    for m in a.models.split(','):
        procs.append((m, subprocess.Popen([sys.executable, __file__, '--models', m, '--threads', '1', '--command', cmd, *rest,
                                           '--out', str(tmp/f'{m}.json')])))
    if any(p.wait() for _, p in procs): sys.exit('a model run failed')
    path = Path(a.out or Path(__file__).parent/'results'/f'seqrec_{a.data}_quality_{get_device(a.device).type}.json')
    out = load_json(path) if path.exists() else {}
    for m, _ in procs:
        r = load_json(tmp/f'{m}.json')
        for k in ('task', 'benchmark', 'data', 'reference'): out[k] = r[k]
        for k in ('models', 'sweep'):
            out.setdefault(k, {}).update(r.get(k, {}))
    save_json(out, path); print('wrote', path)

def plot(path:Path)->Path:
    "Validation NDCG@10 against minutes of training for every row with a curve (models and sweep points), test NDCG@10 in the legend"
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    d = load_json(path); fig, ax = plt.subplots(figsize=(8, 4.5))
    rows = [(k, r) for part in ('models', 'sweep') for k, r in d.get(part, {}).items() if r.get('curve')]
    for k, r in rows:
        c = r['curve']
        ax.plot([p['minutes'] for p in c], [p['val_ndcg@10'] for p in c], label=f"{k}: test {r['ndcg@10']:.3f} ({r['epochs_run']} epochs)")
    for k, ref in d.get('reference', {}).items():
        if 'ndcg@10' in ref and k != 'recbole_sasrec': ax.axhline(ref['ndcg@10'], ls=':', c='grey', lw=1)
    ax.axhline(d['models']['popularity']['ndcg@10'], ls='--', c='k', lw=1, label='popularity (test)')
    ax.set(xlabel='minutes of training (this CPU)', ylabel='validation NDCG@10', title=d.get('benchmark', '').split(',')[0] + ': validation curves (dotted: published test NDCG@10)')
    ax.legend(fontsize=7); ax.grid(alpha=.3); fig.tight_layout()
    out = path.with_name(path.stem + '_curves.png'); fig.savefig(out, dpi=110); print('wrote', out); return out

if __name__ == '__main__': main()
