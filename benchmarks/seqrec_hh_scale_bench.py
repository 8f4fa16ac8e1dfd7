#!/usr/bin/env python
"""seqrec at hh.ru scale: synthetic hh.ru files with about 1M sessions and 200k vacancies through SASRec training
(sampled softmax; a few steps of the full chunked softmax for comparison) and top-100 recommendation for every test
user, with peak memory and MRR@100 (the competition's metric) against popularity.

    python benchmarks/seqrec_hh_scale_bench.py --users 260000 --items 200000 --minutes 6

Writes benchmarks/results/seqrec_hh_scale_<device>.json.
"""
import argparse, json, resource, sys, time, datetime as dt, tempfile
from pathlib import Path
import numpy as np, polars as pl, torch
from recsys_nb.core import save_json, seed_everything, get_device, machine_info
from recsys_nb.data import make_synthetic
from recsys_nb.seqrec import (load_seqrec_data, train_seqrec, SeqRecModel, ModelConfig, TrainConfig, evaluate_model, seq_loss,
                              pad_left, HH_FILES)

def peak_mb()->float: return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--users', type=int, default=260_000); ap.add_argument('--items', type=int, default=200_000)
    ap.add_argument('--minutes', type=float, default=6.0, help='training budget (whole epochs; the first always runs)')
    ap.add_argument('--max-steps', type=int, default=0); ap.add_argument('--n-negatives', type=int, default=8192)
    ap.add_argument('--n-positions', type=int, default=50); ap.add_argument('--batch-size', type=int, default=256)
    ap.add_argument('--lr', type=float, default=2e-3); ap.add_argument('--device', default='auto')
    ap.add_argument('--data-dir', default=''); ap.add_argument('--out', default='')
    ap.add_argument('--loss-weighting', default=TrainConfig.loss_weighting, help="'position' (recipe) or 'batch' (each batch's mean loss)")
    a = ap.parse_args(argv)
    dev = get_device(a.device); m0 = machine_info(dev); seed_everything(0); t = {}
    folder = Path(a.data_dir or tempfile.mkdtemp())/f'hh_synthetic_{a.users}_{a.items}'
    s = time.perf_counter()
    if not all((folder/f).exists() for f in HH_FILES.values()): make_synthetic('seqrec', folder, size=a.users, seed=0, n_items=a.items)
    t['generate_seconds'] = time.perf_counter() - s
    sizes = {k: pl.scan_parquet(folder/f).select(pl.len()).collect().item() for k, f in HH_FILES.items()}
    s = time.perf_counter()
    data, _ = load_seqrec_data('hh', folder, n_positions=a.n_positions, min_item_cnt=1, min_seq_len=1, n_folds=1, max_val_users=0)
    t['prepare_seconds'] = time.perf_counter() - s; t['peak_mb_after_prepare'] = peak_mb()
    model = SeqRecModel(len(data.vocab), ModelConfig('sasrec', hidden_size=64, n_layers=2, n_heads=2, dropout=0.2, n_positions=a.n_positions))
    # the output layer's cost: a few steps of the full (chunked) softmax against the sampled one, same batches
    idx = np.argsort(-data.train.lengths)[:a.batch_size]; ids = pad_left(data.train, idx, a.n_positions + 1)
    step_s = {}
    for name, tc in [('full_chunked_softmax', TrainConfig(ce_chunk=4096)), ('sampled_softmax', TrainConfig(n_negatives=a.n_negatives))]:
        ts = []
        for _ in range(3):
            s = time.perf_counter(); loss = seq_loss(model, ids, tc, torch.Generator().manual_seed(0)); loss.backward(); ts.append(time.perf_counter() - s)
        model.zero_grad(set_to_none=True); step_s[name] = float(np.median(ts))
    t['step_seconds_longest_batch'] = step_s; t['output_layer_speedup_sampled'] = step_s['full_chunked_softmax'] / step_s['sampled_softmax']
    tc = TrainConfig(epochs=100, batch_size=a.batch_size, lr=a.lr, max_minutes=a.minutes, max_steps=a.max_steps, n_negatives=a.n_negatives,
                     loss_weighting=a.loss_weighting)
    h = train_seqrec(model, data.train, tc, dev, seed=0, verbose=False)
    t['train'] = [{k: r[k] for k in ('epoch', 'steps', 'loss', 'seconds')} for r in h]; t['peak_mb_after_training'] = peak_mb()
    s = time.perf_counter(); met, topk = evaluate_model(model, data, 100, True, dev); t['recommend_seconds'] = time.perf_counter() - s
    pop, _ = evaluate_model(None, data, 100, True, dev); t['peak_mb_after_recommend'] = peak_mb()
    out = {'task': 'seqrec', 'benchmark': 'synthetic hh.ru files at competition scale: sampled-softmax SASRec, top-100 for every test user',
           'files_rows': sizes, 'data': data.info, 'n_items': data.vocab.n_items, 'n_train_sequences': len(data.train),
           'n_train_actions': int(data.train.lengths.sum()), 'n_test_users_scored': int(len(topk)), 'timings': t,
           'models': {'sasrec_sampled_softmax': met, 'popularity': pop}, 'args': vars(a),
           'command': 'python benchmarks/seqrec_hh_scale_bench.py ' + ' '.join(argv or sys.argv[1:]),
           'machine_start': m0, 'machine_end': machine_info(dev), 'date': dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}
    path = Path(a.out or Path(__file__).parent/'results'/f'seqrec_hh_scale_{dev.type}.json'); save_json(out, path)
    print(json.dumps({k: v for k, v in out.items() if k in ('files_rows', 'timings', 'models')}, indent=1, default=str)); print('wrote', path)

if __name__ == '__main__': main()
