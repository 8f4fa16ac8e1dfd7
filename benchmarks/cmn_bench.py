"""CMN benchmark: epoch time of the vectorised on-device data pipeline vs a faithful seed-style per-example loader,
and HR@k/NDCG@k of CMN and its baselines after a short training run.

    python benchmarks/cmn_bench.py --device auto --dataset ml-100k --epochs 3

Writes benchmarks/results/cmn_<dataset>_<device>.json (the device is named inside).
"""
import argparse, json, math, platform, time, datetime as dt
from collections import defaultdict
from pathlib import Path
import numpy as np, torch
from recsys_nb.core import seed_everything, get_device, save_json, Timer
from recsys_nb.data import load_movielens
from recsys_nb.cmn import (Interactions, epoch_batches, leave_one_out, split_validation, pretrain_gmf, cmn_from_gmf,
                           make_optimizer, fit, score_fn, ranking_report, itemknn_fn, popularity_fn)


class SeedStyleLoader:
    "The seed notebook's data loader, re-implemented faithfully: Python sets/dicts, one loop iteration per example"
    def __init__(self, train:np.ndarray):
        self.train_data = train[:, :2]
        self.n_users, self.n_items = (int(x) for x in self.train_data.max(0) + 1)
        self.user_items, self.item_users = defaultdict(set), defaultdict(set)
        for u, i in self.train_data:
            self.user_items[u].add(i); self.item_users[i].add(u)
        self.item_users_list = {k: list(v) for k, v in self.item_users.items()}
        self.max_neighbors = max(len(v) for v in self.item_users.values())
        self.index = np.arange(len(self.train_data))

    def _negative(self, u):
        pos = self.user_items[u]
        n = np.random.randint(0, self.n_items)
        while n in pos or n not in self.item_users: n = np.random.randint(0, self.n_items)
        return n

    def _fill(self, nb, ln, idx, item):
        users = self.item_users_list.get(item)
        if users: ln[idx] = len(users); nb[idx, :len(users)] = users
        else: ln[idx] = 1; nb[idx, 0] = item          # the seed writes the item id into a user slot here

    def batches(self, batch_size:int, neg_count:int):
        "Yield (triples, pos_nbrs, pos_len, neg_nbrs, neg_len) numpy batches like the seed's get_data"
        trip = np.zeros((batch_size, 3), np.uint32)
        pn, pl = np.zeros((batch_size, self.max_neighbors), np.int32), np.zeros(batch_size, np.int32)
        nn_, nl = np.zeros((batch_size, self.max_neighbors), np.int32), np.zeros(batch_size, np.int32)
        np.random.shuffle(self.index)
        k = 0
        for u, i in self.train_data[self.index]:
            for _ in range(neg_count):
                n = self._negative(u)
                trip[k] = [u, i, n]
                self._fill(pn, pl, k, i); self._fill(nn_, nl, k, n)
                k += 1
                if k == batch_size:
                    L = max(pl.max(), nl.max())
                    yield trip, pn[:, :L], pl, nn_[:, :L], nl
                    pl[:] = 1; nl[:] = 1; k = 0
        if k:
            L = max(pl[:k].max(), nl[:k].max())
            yield trip[:k], pn[:k, :L], pl[:k], nn_[:k, :L], nl[:k]


def seed_epoch(loader, batch_size, neg_count, dev, limit=0):
    "One epoch of the seed's pipeline, including its per-batch tensor conversion and the copy to the device"
    n = 0
    for trip, pn, pl, nn_, nl in loader.batches(batch_size, neg_count):
        t = [torch.LongTensor(np.array(a, dtype=np.int32)).to(dev) for a in (trip[:, 0], trip[:, 1], trip[:, 2], pn, pl, nn_, nl)]
        n += 1
        if limit and n >= limit: break
    return n


def our_epoch(inter, batch_size, neg_count, max_neighbors, gen, limit=0):
    "One epoch of the vectorised pipeline (the whole epoch's negatives and shuffle are drawn before the first batch)"
    n = 0
    for b in epoch_batches(inter, neg_count, batch_size, max_neighbors, gen):
        n += 1
        if limit and n >= limit: break
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--device', default='auto'); ap.add_argument('--dataset', default='ml-100k')
    ap.add_argument('--data-dir', default=''); ap.add_argument('--seed', type=int, default=42)
    ap.add_argument('--batch-size', type=int, default=128, help='the seed uses 128')
    ap.add_argument('--neg-count', type=int, default=4)
    ap.add_argument('--limit-batches', type=int, default=0, help='time only this many batches of the seed-style loader and extrapolate to the epoch '
                    '(0: full epoch); ours always runs the full epoch')
    ap.add_argument('--epochs', type=int, default=3, help='CMN epochs of the quality run (0: skip it)')
    ap.add_argument('--pretrain-epochs', type=int, default=5)
    ap.add_argument('--train-batch-size', type=int, default=512)
    ap.add_argument('--max-neighbors', type=int, default=64, help='neighbourhood cap of the quality run')
    ap.add_argument('--lr', type=float, default=1e-3, help='RMSProp learning rate of CMN')
    ap.add_argument('--threads', type=int, default=0, help='torch CPU threads (0: default)')
    ap.add_argument('--out', default='')
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    seed_everything(a.seed)
    dev = get_device(a.device)
    res = {'task': 'cmn', 'device': str(dev), 'device_name': torch.cuda.get_device_name(dev) if dev.type == 'cuda' else platform.processor() or platform.machine(),
           'torch_threads': torch.get_num_threads(), 'dataset': a.dataset, 'date_utc': dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds'),
           'args': vars(a)}
    if dev.type != 'cuda': res['gpu'] = 'not measured: no GPU this session'
    ratings, _ = load_movielens(a.dataset, a.data_dir)
    data = leave_one_out(ratings, seed=a.seed)
    res['data'] = {'n_users': data.n_users, 'n_items': data.n_items, 'n_train': len(data.train), 'n_test': len(data.test)}
    print(res['data'], flush=True)

    # --- data pipeline: one epoch of (user, pos, neg) triples with full neighbourhoods, same batch size and neg_count
    inter = Interactions(data.train, data.n_users, data.n_items, dev)
    n_batches = math.ceil(len(data.train) * a.neg_count / a.batch_size)
    lim = a.limit_batches
    with Timer(dev) as t_ours: d1 = our_epoch(inter, a.batch_size, a.neg_count, 0, torch.Generator(dev).manual_seed(0))
    with Timer(dev) as t_ours_cap: d2 = our_epoch(inter, a.batch_size, a.neg_count, a.max_neighbors, torch.Generator(dev).manual_seed(0))
    ours_s, ours_cap_s = t_ours.seconds * n_batches / d1, t_ours_cap.seconds * n_batches / d2
    with Timer() as t_build: loader = SeedStyleLoader(data.train)
    np.random.seed(0)
    with Timer(dev) as t_seed: done = seed_epoch(loader, a.batch_size, a.neg_count, dev, lim)
    seed_s = t_seed.seconds * n_batches / done
    res['pipeline'] = {'batches_per_epoch': n_batches, 'batch_size': a.batch_size, 'neg_count': a.neg_count,
                       'ours_epoch_s_full_neighborhoods': ours_s, f'ours_epoch_s_cap{a.max_neighbors}': ours_cap_s,
                       'seed_style_epoch_s': seed_s, 'seed_style_batches_timed': done, 'seed_style_extrapolated': done < n_batches,
                       'seed_style_index_build_s': t_build.seconds,
                       'speedup_same_neighborhoods': seed_s / ours_s}
    print(json.dumps(res['pipeline'], indent=1), flush=True)

    # --- quality: GMF pretraining, CMN, baselines on the leave-one-out test (1 + 100 candidates)
    if a.epochs:
        tr, val = split_validation(data, 0, 4, 0, seed=a.seed)
        with Timer(dev) as t_g:
            gmf, gh = pretrain_gmf(inter, 50, a.pretrain_epochs, 1e-3, 4, 1024, seed=a.seed, log=None, show_progress=False)
        torch.manual_seed(a.seed)
        model = cmn_from_gmf(gmf, 2)
        with Timer(dev) as t_c:
            hist = fit(model, inter, make_optimizer(model, a.lr, 0.9, 0.9), a.epochs, a.neg_count, a.train_batch_size, a.max_neighbors,
                       0.1, 5.0, None, seed=a.seed, log=lambda s: print(s, flush=True), show_progress=False)
        fns = {'cmn': score_fn(model, inter, a.max_neighbors), 'gmf': score_fn(gmf), 'itemknn': itemknn_fn(inter), 'popularity': popularity_fn(inter)}
        reps = {k: ranking_report(f, data.test, dev) for k, f in fns.items()}
        res['quality'] = {'protocol': 'leave-one-out by timestamp, 1 positive + 100 untouched negatives, ties against the positive',
                          'cmn': {'epochs': a.epochs, 'neg_count': a.neg_count, 'batch_size': a.train_batch_size, 'max_neighbors': a.max_neighbors,
                                  'hops': 2, 'embed_size': 50, 'l2': 0.1, 'optimizer': f'RMSProp lr {a.lr} decay 0.9 momentum 0.9, clip 5'},
                          'gmf_pretrain_epochs': a.pretrain_epochs,
                          'train_seconds': {'gmf': t_g.seconds, 'cmn': t_c.seconds},
                          'cmn_epoch_seconds': [h['seconds'] for h in hist], 'cmn_loss': [h['loss'] for h in hist],
                          'models': {k: {m: r[m] for m in ('hr@1', 'hr@5', 'hr@10', 'ndcg@5', 'ndcg@10')} for k, r in reps.items()}}
        print(json.dumps(res['quality']['models'], indent=1), flush=True)
    out = Path(a.out or Path(__file__).parent/'results'/f'cmn_{a.dataset}_{dev.type}.json')
    save_json(res, out); print('wrote', out)


if __name__ == '__main__': main()
