"""CMN quality and speed on MovieLens: CMN vs popularity, ItemKNN and GMF, 4-fold means; ablation; epoch times.

The recipe is the pipeline notebook's parameters cell (nbs/tasks/cmn.ipynb), read here so the two cannot drift.
Every model ranks the same candidates (leave-one-out, 1 positive + 100 sampled negatives per user).

    python benchmarks/cmn_bench.py --dataset ml-100k --folds 0 1 2 3     # one fold per call keeps locked commands short
    python benchmarks/cmn_bench.py --dataset ml-100k --ablation          # fold 0, validation users, one change at a time
                                                                         # (--select-lr: learning rate = best of LR_GRID there)
    python benchmarks/cmn_bench.py --dataset ml-1m --gmf-sweep          # GMF variants (CMN's initialisation), fold 0
    python benchmarks/cmn_bench.py --dataset ml-100k --speed             # seed-equivalent epoch (full neighbourhoods, 4 negatives)
    python benchmarks/cmn_bench.py --dataset ml-1m --folds 0 1 2 3 --gmf-recipe sgd   # the same with Rendle et al.'s SGD GMF

Results are merged into benchmarks/results/cmn_quality_cpu.json (per fold, then means over the folds present).
"""
import argparse, ast, json, os, shlex, sys, datetime as dt
from pathlib import Path
import numpy as np, torch
from recsys_nb.core import seed_everything, save_json, load_json, Timer, set_threads, machine_info
from recsys_nb.data import load_movielens
from recsys_nb.metrics import sampled_ranking_report
from recsys_nb.cmn import (candidate_scores, Interactions, leave_one_out, split_validation, pretrain_gmf, cmn_from_gmf, make_optimizer, fit,
                           score_fn, ranking_report, itemknn_fn, popularity_fn, best_epoch, recipe_kwargs)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT/'benchmarks'/'results'/'cmn_quality_cpu.json'
SEED_NOTEBOOK_EPOCH_S = [143, 174]     # the original notebook's CMN epoch on ml-100k, CPU (issue 16)
SEED_EMBED_SIZE = 50                   # the seed notebook's embedding size (the speed comparison uses it)
OLD_MODULE_EPOCH_S = 142               # recsys_nb.cmn before this change: 5 epochs in 711 s (benchmarks/results/cmn_ml-100k_cpu.json)
METRICS = ('hr@1', 'hr@5', 'hr@10', 'ndcg@5', 'ndcg@10')


def recipe(nb=ROOT/'nbs'/'tasks'/'cmn.ipynb')->dict:
    "The literal defaults of the pipeline notebook's `parameters` cell"
    cells = json.loads(Path(nb).read_text())['cells']
    src = next(''.join(c['source']) for c in cells if 'parameters' in c.get('metadata', {}).get('tags', []))
    return {n.target.id: ast.literal_eval(n.value) for n in ast.parse(src).body if isinstance(n, ast.AnnAssign)}


def machine()->dict: return machine_info('cpu')   # the shared helper: device, threads, load average at the start


def prepare(dataset, fold, R):
    ratings, _ = load_movielens(dataset)
    data = leave_one_out(ratings, n_neg=R['n_neg_test'], seed=R['seed'] + fold)
    tr, val = split_validation(data, fold, R['n_folds'], R['val_users'], R['n_neg_test'], R['seed'])
    return data, val, Interactions(tr.train, data.n_users, data.n_items)


def train_gmf(inter, val, R, fold):
    with Timer() as t:
        gmf, h = pretrain_gmf(inter, **recipe_kwargs(R)['gmf_kw'], seed=R['seed'] + fold, val=val, verbose=False)
    return gmf, h, t.seconds


def train_cmn(gmf, inter, val, R, fold, **over):
    kw = recipe_kwargs({**R, **over})
    torch.manual_seed(R['seed'] + fold)
    model = cmn_from_gmf(gmf, **kw['cmn_kw'])
    opt = make_optimizer(model, **kw['opt_kw'])
    with Timer() as t:
        h = fit(model, inter, opt, val=val, seed=R['seed'] + fold, precision=over.get('precision', R['precision']), verbose=False, **kw['fit_kw'])
    return model, h, t.seconds


def run_fold(dataset, fold, R):
    data, val, inter = prepare(dataset, fold, R)
    res = {'machine': machine(), 'n_users': data.n_users, 'n_items': data.n_items, 'n_train': len(inter), 'n_test_users': len(data.test),
           'n_val_users': len(val), 'models': {}}
    def report(name, f, train_s, extra=None):
        with Timer() as t: rep = ranking_report(f, data.test)
        res['models'][name] = {**{m: rep[m] for m in METRICS}, 'minutes': (train_s + t.seconds) / 60, **(extra or {})}
        print(fold, name, {m: round(rep[m], 4) for m in ('hr@10', 'ndcg@10')}, f'{(train_s + t.seconds):.1f}s', flush=True)
    with Timer() as t: f = popularity_fn(inter)
    report('popularity', f, t.seconds)
    with Timer() as t: f = itemknn_fn(inter, R['knn_k'], R['knn_shrink'])
    report('itemknn', f, t.seconds)
    gmf, gh, gs = train_gmf(inter, val, R, fold)
    report('gmf', score_fn(gmf), gs, {'epochs_run': len(gh), 'best_epoch': best_epoch(gh)})
    cmn, ch, cs = train_cmn(gmf, inter, val, R, fold)
    report('cmn', score_fn(cmn, inter, R['eval_neighbors']), gs + cs,
           {'epochs_run': len(ch), 'best_epoch': best_epoch(ch), 'epoch_seconds': [h['seconds'] for h in ch],
            'val_hr@10': [h['val_hr@10'] for h in ch], 'minutes_cmn_only': cs / 60, 'minutes_include': 'GMF pretraining + CMN + test scoring'})
    res['machine']['load_average_end'] = list(os.getloadavg())
    return res


LR_GRID = (3e-4, 3e-3)    # --select-lr: the CMN learning rate is the best of the recipe's and these on the validation users of fold 0
ABLATION = [  # (name, changes from the recipe) - each row changes one thing
    ('recipe', {}),
    ('with the label leak (query user kept in the neighbourhood, as the seed)', {'exclude_user': False}),
    ('the previous recipe: GMF term in the output, RMSProp lr 3e-5, L2 0.1', {'gmf_term': True, 'optimizer': 'rmsprop', 'learning_rate': 3e-5, 'l2_lambda': 0.1}),
    ('GMF term added to the output (CMN starts exactly at GMF)', {'gmf_term': True}),
    ('RMSProp with momentum (the seed\'s optimiser)', {'optimizer': 'rmsprop'}),
    ('L2 0.1 on the dense weights (the seed\'s)', {'l2_lambda': 0.1}),
    ('output memory from GMF users (both memories pretrained)', {'output_memory': 'gmf'}),
    ('neighbourhood cap 64 in training and evaluation (recipe: 32)', {'max_neighbors': 64, 'eval_neighbors': 64}),
    ('8 negatives per positive (recipe: 4)', {'neg_count': 8}),
    ('hops 1', {'hops': 1}),
    ('hops 3', {'hops': 3}),
    *[(f'learning rate {lr:g}', {'learning_rate': lr}) for lr in LR_GRID],
]
BLEND_W = (0.1, 0.25, 0.5, 1.0)
ADAM = {'pretrain_optimizer': 'adam', 'pretrain_example_l2': 0.0, 'pretrain_init_std': 0.01, 'pretrain_neg': 4, 'pretrain_batch': 1024,
        'pretrain_epochs': 60, 'pretrain_keep_best': True}
OLD_GMF = {**ADAM, 'pretrain_loss': 'bpr', 'pretrain_bias': False, 'pretrain_l2': 0.0, 'pretrain_lr': 3e-3, 'embed_size': 50, 'pretrain_patience': 2}
P5 = {**OLD_GMF, 'pretrain_patience': 5}
NEW = {**P5, 'pretrain_loss': 'bce', 'pretrain_bias': True, 'pretrain_l2': 1e-3}
SGD_GRID = [(0.02, 64, 30), (0.02, 128, 30)]   # (learning rate per example, dim, epochs)
SGD_RECIPE = {'pretrain_optimizer': 'sgd', 'pretrain_loss': 'example', 'pretrain_bias': True, 'pretrain_l2': 0.0, 'pretrain_example_l2': 0.005,
              'pretrain_init_std': 0.1, 'pretrain_neg': 8, 'pretrain_batch': 4096, 'pretrain_lr': 0.02, 'embed_size': 64, 'pretrain_epochs': 30,
              'pretrain_patience': 0, 'pretrain_keep_best': False}   # --gmf-recipe sgd: the best SGD row of the ml-1m GMF sweep (CMN at its 64 dims)
GMF_SWEEP = [  # (name, GMF settings): the GMF recipe that CMN starts from, from the old one
    ('old recipe: BPR, no biases, no L2, Adam 3e-3, dim 50, patience 2', OLD_GMF),
    ('old recipe, patience 5', P5),
    ('patience 5 + L2 0.001 on the embedding rows', {**P5, 'pretrain_l2': 1e-3}),
    ('patience 5 + user and item biases', {**P5, 'pretrain_bias': True}),
    ('patience 5 + log loss (NCF) instead of BPR', {**P5, 'pretrain_loss': 'bce'}),
    ('log loss + biases + L2 0.001, Adam 1e-3, dim 50', {**NEW, 'pretrain_lr': 1e-3}),
    ('log loss + biases + L2 0.001, Adam 1e-3, dim 128', {**NEW, 'pretrain_lr': 1e-3, 'embed_size': 128}),
    ('log loss + biases + L2 0.001, Adam 5e-4, dim 128', {**NEW, 'pretrain_lr': 5e-4, 'embed_size': 128}),
    *[(f'SGD per example (Rendle et al.): lr {lr:g}, L2 0.005 per example, 8 negatives, std 0.1, dim {d}, {ep} epochs, '
       + ('best validation epoch' if keep else 'last epoch'),
       {**SGD_RECIPE, 'pretrain_lr': lr, 'embed_size': d, 'pretrain_epochs': ep, 'pretrain_keep_best': keep})
      for lr, d, ep in SGD_GRID for keep in (False, True)],
]


def gmf_sweep(dataset, R, on_rows=None, names=None):
    "GMF variants on fold 0: validation HR/NDCG@10 (what chooses) and test HR/NDCG@10 (all users), epochs, seconds"
    data, val, inter = prepare(dataset, 0, R)
    rows = []
    for name, ch in GMF_SWEEP:
        if names and not any(n in name for n in names): continue
        gmf, h, sec = train_gmf(inter, val, {**R, **ch}, 0)
        v, t = ranking_report(score_fn(gmf), val), ranking_report(score_fn(gmf), data.test)
        rows.append({'name': name, 'settings': ch, 'val_hr@10': v['hr@10'], 'val_ndcg@10': v['ndcg@10'], 'test_hr@10': t['hr@10'],
                     'test_ndcg@10': t['ndcg@10'], 'epochs_run': len(h), 'best_epoch': best_epoch(h), 'seconds': sec})
        print({k: (round(x, 4) if isinstance(x, float) else x) for k, x in rows[-1].items() if k != 'settings'}, flush=True)
        if on_rows: on_rows(rows)
    return {'fold': 0, 'users': f'{len(val)} validation users of fold 0; test: all {len(data.test)} test users', 'machine': machine(), 'rows': rows}


def userknn_fn(inter, k=100, shrink=10.0):
    "UserKNN (cosine with shrink, top-k neighbour users): `score(u, i) = sum_{v in N_k(u), v rated i} sim(u, v)` (dense; MovieLens sizes)"
    X = torch.zeros(inter.n_users, inter.n_items); X[inter.users, inter.items] = 1
    n = X.sum(1).sqrt()
    S = (X @ X.T) / (n[:, None] * n[None] + shrink + 1e-9); S.fill_diagonal_(0)
    v, j = S.topk(min(k, inter.n_users - 1), 1)
    U = torch.zeros_like(S).scatter_(1, j, v) @ X
    return lambda users, items: U[users, items]


def complement(gmf, inter, val, test, R):
    """How much a neighbourhood signal can add to GMF at all: GMF + w * ItemKNN / UserKNN scores (each z-scored over a
    user's 101 candidates), w on a grid; HR@10 on the validation users and on the test users"""
    def z(p, n):
        a = np.concatenate([p[:, None], n], 1); return (a - a.mean(1, keepdims=True)) / (a.std(1, keepdims=True) + 1e-9)
    out = {}
    for part, c in (('val', val), ('test', test)):
        S = {name: z(*candidate_scores(f, c)) for name, f in (('gmf', score_fn(gmf)), ('itemknn', itemknn_fn(inter, R['knn_k'], R['knn_shrink'])),
                                                     ('userknn', userknn_fn(inter)))}
        hr = lambda a: sampled_ranking_report(a[:, 0], a[:, 1:])['hr@10']
        out[part] = {'gmf': hr(S['gmf']), 'itemknn': hr(S['itemknn']), 'userknn': hr(S['userknn']),
                     **{f'gmf+{w:g}*{o}': hr(S['gmf'] + w * S[o]) for o in ('itemknn', 'userknn') for w in BLEND_W}}
    for o in ('itemknn', 'userknn'):       # the weight chosen on the validation users, scored on the test users
        w = max(BLEND_W, key=lambda w: out['val'][f'gmf+{w:g}*{o}'])
        out[f'best_val_{o}'] = {'w': w, 'test_hr@10': out['test'][f'gmf+{w:g}*{o}'], 'test_gain_over_gmf': out['test'][f'gmf+{w:g}*{o}'] - out['test']['gmf']}
    print('complement', {k: v for k, v in out.items() if k.startswith('best')}, flush=True)
    return out


def ablation(dataset, R, names=None, on_rows=None):
    "on_rows(rows): called after every row (the caller saves them: a long ablation loses nothing when stopped)"
    data, val, inter = prepare(dataset, 0, R)
    gmf, gh, gs = train_gmf(inter, val, R, 0)
    g = ranking_report(score_fn(gmf), val)
    rows = [{'name': 'GMF alone (the initialisation)', 'val_hr@10': g['hr@10'], 'val_ndcg@10': g['ndcg@10'], 'epochs_run': len(gh)}]
    comp = complement(gmf, inter, val, data.test, R)
    print(rows[-1], flush=True)
    if on_rows: on_rows(rows)
    for name, ch in ABLATION:
        if names and not any(n in name for n in names): continue
        if ch and all(R.get(k) == v for k, v in ch.items()): continue     # already the recipe
        m, h, s = train_cmn(gmf, inter, val, R, 0, **ch)
        b = max(h, key=lambda r: r['val_hr@10'])
        rows.append({'name': name, 'change': ch, 'val_hr@10': b['val_hr@10'], 'val_ndcg@10': b['val_ndcg@10'], 'best_epoch': b['epoch'],
                     'epochs_run': len(h), 'final_train_loss': h[-1]['loss'], 'seconds': s, 'epoch_seconds': [r['seconds'] for r in h]})
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items() if k != 'epoch_seconds'}, flush=True)
        if on_rows: on_rows(rows)
    lr_rows = [r for r in rows if r['name'] == 'recipe' or r['name'].startswith('learning rate')]
    best = max(lr_rows, key=lambda r: r['val_hr@10']) if lr_rows else {}   # first of equal values: the recipe
    return {'fold': 0, 'users': f'{len(val)} validation users of fold 0 (their latest training pair held out, 100 negatives)',
            'machine': machine(), 'rows': rows, 'complement': comp,
            'selected_learning_rate': best.get('change', {}).get('learning_rate', R['learning_rate'])}


def speed(dataset, R, epochs=2):
    """Epoch time of the seed's epoch definition (every training pair x 4 negatives, full neighbourhoods) and of the recipe,
    and the recipe in bf16 autocast against fp32 (this CPU has AVX512-BF16): seconds per epoch and validation HR@10 after
    `epochs` epochs, fp32 and bf16 interleaved epoch by epoch so that both see the same machine load. At the seed's
    embedding size (50), whatever the recipe's: the comparison with the seed notebook's epoch is like for like"""
    R = {**R, 'embed_size': SEED_EMBED_SIZE}
    data, val, inter = prepare(dataset, 0, R)
    gmf, _, _ = train_gmf(inter, val, R, 0)
    out = {}
    for name, over in [('seed_epoch_full_neighbourhoods_4neg', {'max_neighbors': 0, 'neg_count': 4}), ('recipe', {})]:
        _, h, _ = train_cmn(gmf, inter, None, R, 0, epochs=epochs, **over)
        sec = [r['seconds'] for r in h]
        out[name] = {'epoch_seconds': sec, 'batch_size': R['batch_size'], 'neg_count': over.get('neg_count', R['neg_count']),
                     'max_neighbors': over.get('max_neighbors', R['max_neighbors']),
                     'speedup_vs_seed_notebook': [s / min(sec) for s in SEED_NOTEBOOK_EPOCH_S],
                     'speedup_vs_old_module': OLD_MODULE_EPOCH_S / min(sec)}
        print(name, out[name], flush=True)
    prec = {p: {'epoch_seconds': [], 'val_hr@10': []} for p in ('fp32', 'bf16')}
    for ep in range(1, epochs + 1):     # interleaved: each precision trains from scratch to `ep` epochs in turn
        for p in prec:
            _, h, _ = train_cmn(gmf, inter, val, R, 0, epochs=ep, patience=0, precision=p)
            prec[p]['epoch_seconds'].append(h[-1]['seconds']); prec[p]['val_hr@10'].append(h[-1]['val_hr@10'])
    out['precision'] = {**prec, 'bf16_speedup': min(prec['fp32']['epoch_seconds']) / min(prec['bf16']['epoch_seconds']),
                        'val_hr@10_bf16_minus_fp32': prec['bf16']['val_hr@10'][-1] - prec['fp32']['val_hr@10'][-1]}
    print('precision', out['precision'], flush=True)
    return {**out, 'machine': machine(), 'seed_notebook_epoch_s': SEED_NOTEBOOK_EPOCH_S, 'old_module_epoch_s': OLD_MODULE_EPOCH_S}


def summarize(ds:dict)->dict:
    folds = ds.get('folds', {})
    models = sorted({m for f in folds.values() for m in f['models']})
    return {m: {**{k: float(np.mean([f['models'][m][k] for f in folds.values()])) for k in (*METRICS, 'minutes')},
                'folds': sorted(int(k) for k in folds)} for m in models}

def markdown(res:dict)->str:
    "The ablation tables and the 4-fold means of the JSON as markdown (the tables of nbs/20_cmn.ipynb)"
    out = []
    for ds in ('ml-100k', 'ml-1m'):
        a = res.get(ds, {}).get('ablation')
        if not a: continue
        cmds = list(dict.fromkeys(r.get('command') or a['command'] for r in a['rows']))
        out += [f"**{ds}**, {a['users']}; " + '; '.join(f'`{c}`' for c in cmds) + (f"; {a['note']}" if a.get('note') else '') + ':\n',
                '| configuration | val HR@10 | val NDCG@10 | best epoch / run | s per epoch |\n|---|---|---|---|---|']
        for r in a['rows']:
            eps = r.get('epoch_seconds')
            out.append(f"| {r['name']} | {r['val_hr@10']:.4f} | {r['val_ndcg@10']:.4f} | {r.get('best_epoch', '-')} / {r['epochs_run']} | "
                       f"{sum(eps) / len(eps):.1f} |" if eps else f"| {r['name']} | {r['val_hr@10']:.4f} | {r['val_ndcg@10']:.4f} | "
                       f"{r.get('best_epoch', '-')} / {r['epochs_run']} | - |")
        c = a.get('complement')
        if c:
            out += ['', 'What a neighbourhood can add to this GMF at best (GMF + w x ItemKNN or UserKNN, z-scored per user, w chosen on '
                    f"the validation users): test HR@10 GMF {c['test']['gmf']:.4f}, + ItemKNN {c['best_val_itemknn']['test_hr@10']:.4f} "
                    f"({c['best_val_itemknn']['test_gain_over_gmf']:+.4f}), + UserKNN {c['best_val_userknn']['test_hr@10']:.4f} "
                    f"({c['best_val_userknn']['test_gain_over_gmf']:+.4f})."]
        out.append('')
    for ds in ('ml-100k', 'ml-1m'):
        g = res.get(ds, {}).get('gmf_sweep')
        if not g: continue
        cmds = list(dict.fromkeys(r.get('command') or g['command'] for r in g['rows']))
        out += [f"**GMF recipe, {ds}**, fold 0, {g['users']}; " + '; '.join(f'`{c}`' for c in cmds) + ':\n',
                '| GMF | val HR@10 | val NDCG@10 | test HR@10 | test NDCG@10 | best epoch / run | seconds |\n|---|---|---|---|---|---|---|']
        out += [f"| {r['name']} | {r['val_hr@10']:.4f} | {r['val_ndcg@10']:.4f} | {r['test_hr@10']:.4f} | {r['test_ndcg@10']:.4f} | "
                f"{r['best_epoch']} / {r['epochs_run']} | {r['seconds']:.0f} |" for r in g['rows']]
        out.append('')
    out.append('| data | model | HR@10 | NDCG@10 | minutes / fold | folds |\n|---|---|---|---|---|---|')
    for ds in ('ml-100k', 'ml-1m'):
        m = res.get(ds, {}).get('mean', {})
        for name in ('cmn', 'gmf', 'itemknn', 'popularity'):
            if name in m: out.append(f"| {ds} | {name} | {m[name]['hr@10']:.4f} | {m[name]['ndcg@10']:.4f} | {m[name]['minutes']:.2f} | {len(m[name]['folds'])} |")
        m = res.get(ds, {}).get('sgd_gmf', {}).get('mean', {})
        for name, label in (('gmf', f"GMF by per-example SGD (Rendle et al.), {SGD_RECIPE['embed_size']} dims"), ('cmn', 'CMN from that GMF')):
            if name in m: out.append(f"| {ds} | {label} | {m[name]['hr@10']:.4f} | {m[name]['ndcg@10']:.4f} | {m[name]['minutes']:.2f} | {len(m[name]['folds'])} |")
        for key, v in res.get(ds, {}).get('variants', {}).items():
            for name in ('cmn', 'gmf'):
                r = v['mean'].get(name)
                if r: out.append(f"| {ds} | {name}, recipe with {key} | {r['hr@10']:.4f} | {r['ndcg@10']:.4f} | {r['minutes']:.2f} | {len(r['folds'])} |")
    return '\n'.join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--dataset', default='ml-100k'); ap.add_argument('--folds', type=int, nargs='*', default=[])
    ap.add_argument('--ablation', action='store_true'); ap.add_argument('--only', nargs='*', default=None, help='ablation / GMF sweep rows whose name contains one of these')
    ap.add_argument('--select-lr', action='store_true', help=f'with --ablation: use the best of {LR_GRID} on the validation users for the folds')
    ap.add_argument('--gmf-sweep', action='store_true', help='GMF variants on fold 0 (the initialisation CMN starts from)')
    ap.add_argument('--speed', action='store_true'); ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--gmf-recipe', default='pipeline', choices=('pipeline', 'sgd'),
                    help="with --folds: 'sgd' pretrains GMF with Rendle et al.'s per-example SGD (SGD_RECIPE) and stores the folds under <dataset>.sgd_gmf")
    ap.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE',
                    help='with --folds: override recipe parameters (Python literals); the folds go under <dataset>.variants["KEY=VALUE ..."]')
    ap.add_argument('--out', default=str(OUT))
    ap.add_argument('--markdown', action='store_true', help='print the tables of the JSON (as in nbs/20_cmn.ipynb) and stop')
    a = ap.parse_args()
    if a.markdown: print(markdown(load_json(a.out))); return
    set_threads(a.threads); torch.set_flush_denormal(True)
    R = recipe(); seed_everything(R['seed'])
    out = Path(a.out)
    res = load_json(out) if out.exists() else {}
    res.update({'task': 'cmn', 'device': 'cpu', 'protocol': 'leave-one-out by timestamp, 1 positive + 100 untouched negatives '
                '(same candidates for every model), ties count against the positive; validation: the latest training pair '
                'of <= 500 users of the fold', 'recipe': R})
    ds = res.setdefault(a.dataset, {})
    cmd = 'python ' + shlex.join([str(Path(sys.argv[0]).relative_to(ROOT)) if Path(sys.argv[0]).is_absolute() else sys.argv[0], *sys.argv[1:]])
    if a.ablation:
        prev = ds.get('ablation', {}); before = [{**r, 'command': r.get('command', prev.get('command'))} for r in prev.get('rows', [])] if a.only else []
        def merged(rows):   # with --only, the rows not rerun stay as measured before (each names its command)
            rows = [{**r, 'command': cmd} for r in rows]; names = {r['name'] for r in rows}
            old = [r for r in before if r['name'] not in names]
            order = ['GMF alone (the initialisation)'] + [n for n, _ in ABLATION]
            return sorted(old + rows, key=lambda r: order.index(r['name']) if r['name'] in order else len(order))
        def save_rows(rows):
            ds['ablation'] = {**ds.get('ablation', {}), 'rows': merged(rows), 'command': cmd, 'complete': False}; save_json(res, out)
        new = ablation(a.dataset, R, a.only, on_rows=save_rows)
        ds['ablation'] = {**new, 'rows': merged(new['rows']), 'command': cmd, 'complete': True}; save_json(res, out)
        if a.select_lr and ds['ablation']['selected_learning_rate'] != R['learning_rate']:
            R['learning_rate'] = ds['ablation']['selected_learning_rate']
            print('selected learning rate', R['learning_rate'], '- set it as the default in nbs/tasks/cmn.ipynb', flush=True)
    if a.gmf_sweep:   # with --only, the rows not rerun stay as measured before (each names its command)
        prev = ds.get('gmf_sweep', {}); before = [{**r, 'command': r.get('command', prev.get('command'))} for r in prev.get('rows', [])] if a.only else []
        def merged_sweep(rows):
            rows = [{**r, 'command': cmd} for r in rows]; names = {r['name'] for r in rows}; order = [n for n, _ in GMF_SWEEP]
            return sorted([r for r in before if r['name'] not in names] + rows, key=lambda r: order.index(r['name']) if r['name'] in order else len(order))
        def save_sweep(rows): ds['gmf_sweep'] = {**prev, 'rows': merged_sweep(rows), 'command': cmd, 'complete': False}; save_json(res, out)
        new = gmf_sweep(a.dataset, R, save_sweep, a.only)
        ds['gmf_sweep'] = {**new, 'rows': merged_sweep(new['rows']), 'command': cmd, 'complete': True}; save_json(res, out)
    if a.speed: ds['speed'] = {**speed(a.dataset, R), 'command': cmd}; save_json(res, out)
    part = ds if a.gmf_recipe == 'pipeline' else ds.setdefault('sgd_gmf', {'gmf_recipe': SGD_RECIPE})
    if a.gmf_recipe == 'sgd': R = {**R, **SGD_RECIPE}
    if a.set:
        over = {k: ast.literal_eval(v) for k, v in (x.split('=', 1) for x in a.set)}
        unknown = set(over) - set(R)
        if unknown: sys.exit(f'--set: unknown recipe parameters {sorted(unknown)} (see nbs/tasks/cmn.ipynb)')
        R = {**R, **over}
        part = part.setdefault('variants', {}).setdefault(' '.join(a.set), {'changes': over})
    for fold in a.folds:
        part.setdefault('folds', {})[str(fold)] = {**run_fold(a.dataset, fold, R), 'command': cmd, 'recipe': dict(R),
                                                   'date_utc': dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}
        part['mean'] = summarize(part)
        save_json(res, out)
    print('wrote', out)


if __name__ == '__main__': main()
