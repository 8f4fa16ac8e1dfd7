"""PFound at the retrieval seed's scale (42 queries x 367,840 scored documents) versus the seed-style loop.

python benchmarks/metrics_pfound_bench.py --device auto --queries 42 --docs 367840 --seed-queries 1,2

The metric itself runs on the CPU (numpy/polars); `--device` only decides where the random scores are drawn.
The seed's loop (filter the whole prediction list once per query, then a Python loop over every document) needs
the 15.4 million predictions as Python dicts (several GB), so it is timed on 1 and 2 queries (each with the full
367,840 documents) and extrapolated: per query it costs one filter over all nq*nd prediction dicts (timed apart,
per dict) plus a loop over nd documents, so T(nq) = nq * (filter_per_dict * nq*nd + loop_per_query).
A plain linear extrapolation (per-query time at the subset x 42) is reported beside it as a lower bound.
"""
import argparse, json, os, platform, sys, time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from recsys_nb.core import get_device, save_json, seed_everything, machine_info
from recsys_nb.metrics import pfound, retrieval_report


def seed_pfound_score(y_true, y_score, pbreak=.15):
    "The retrieval seed's per-query loop, as written there"
    indices = np.argsort(y_score)[::-1]
    y_max = max(y_true)
    pf, plook = 0., 1.
    for rank, i in enumerate(indices):
        r = (2. ** y_true[i] - 1.) / (2. ** y_max)
        pf += r * plook * pbreak ** rank
        plook *= 1. - r
    return pf


def seed_pfound(qrels_list, y_pred, pbreak=.15):
    "The retrieval seed's PFound: the whole prediction list is filtered once per query"
    zero = {'score': 0.0, 'relevance': 0.0}
    out = []
    for q in set(r['query_id'] for r in qrels_list):
        cur = [d for d in y_pred if d['query_id'] == q]
        y = {r['doc_id']: r for r in qrels_list if r['query_id'] == q}
        yp = np.empty(len(cur)); yt = np.empty(len(cur))
        for n, d in enumerate(cur):
            yp[n] = d['score']; yt[n] = y.get(d['doc_id'], zero)['relevance']
        out.append(seed_pfound_score(yt, yp, pbreak))
    return float(np.mean(out))


def make_data(nq, nd, n_judged, device, seed):
    "Random scores [nq, nd] (drawn on `device`) and graded qrels, ~n_judged per query"
    import torch
    g = torch.Generator(device=device).manual_seed(seed)
    S = torch.rand(nq, nd, generator=g, device=device).cpu().numpy().astype(np.float64)
    rng = np.random.default_rng(seed)
    q = np.repeat(np.arange(nq), n_judged)
    d = np.concatenate([rng.choice(nd, n_judged, replace=False) for _ in range(nq)])
    rel = rng.integers(0, 4, len(q))
    S[q, d] += 0.35 * rel * rng.random(len(q))   # a model that is right some of the time: judged docs drift up
    return S, pl.DataFrame({'query_id': q, 'doc_id': d, 'relevance': rel})


def timed(f, repeat):
    ts, v = [], None
    for _ in range(repeat):
        t = time.perf_counter(); v = f(); ts.append(time.perf_counter() - t)
    return v, min(ts), float(np.median(ts))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--device', default='auto', help='where the random scores are drawn: auto, cpu, cuda')
    ap.add_argument('--queries', type=int, default=42)
    ap.add_argument('--docs', type=int, default=367840)
    ap.add_argument('--judged', type=int, default=100, help='judged documents per query (grades 0..3)')
    ap.add_argument('--seed-queries', default='1,2', help='query counts at which the seed-style loop is timed')
    ap.add_argument('--repeat', type=int, default=3)
    ap.add_argument('--seed', type=int, default=42)
    ap.add_argument('--out', default=str(Path(__file__).resolve().parent / 'results' / 'metrics_pfound.json'))
    a = ap.parse_args(argv)
    seed_everything(a.seed)
    dev = get_device(a.device)
    nq, nd = a.queries, a.docs
    S, qrels = make_data(nq, nd, a.judged, dev.type, a.seed)
    qids, dids = np.arange(nq), np.arange(nd)
    res = {'machine_start': machine_info('cpu'), 'benchmark': 'pfound', 'queries': nq, 'docs_per_query': nd, 'rows': nq * nd, 'judged_per_query': a.judged,
           'device': 'cpu (the metric is numpy/polars; scores drawn on %s)' % dev, 'cpu': platform.processor() or platform.machine(),
           'python': platform.python_version(), 'polars': pl.__version__, 'numpy': np.__version__,
           'gpu': 'not measured: no GPU this session (the metric runs on the CPU in any case)', 'repeat': a.repeat}

    v, tmin, tmed = timed(lambda: pfound(S, qrels, query_ids=qids, doc_ids=dids), a.repeat)
    res['ours_matrix'] = {'pfound': v, 'seconds_min': tmin, 'seconds_median': tmed}
    print(f'score matrix {nq}x{nd}: pfound={v:.6f} in {tmin:.2f}s (min of {a.repeat})', flush=True)

    table = pl.DataFrame({'query_id': np.repeat(qids, nd), 'doc_id': np.tile(dids, nq), 'score': S.ravel()})
    v2, tmin, tmed = timed(lambda: pfound(table, qrels), a.repeat)
    res['ours_long_table'] = {'pfound': v2, 'seconds_min': tmin, 'seconds_median': tmed, 'rows_grouped_by_query': True}
    print(f'long table {len(table):,} rows: pfound={v2:.6f} in {tmin:.2f}s', flush=True)
    shuffled = table.sample(fraction=1.0, shuffle=True, seed=a.seed)
    v3, tmin, tmed = timed(lambda: pfound(shuffled, qrels), a.repeat)
    res['ours_long_table_shuffled'] = {'pfound': v3, 'seconds_min': tmin, 'seconds_median': tmed}
    print(f'long table, rows shuffled: pfound={v3:.6f} in {tmin:.2f}s', flush=True)
    del shuffled
    # string ids, as a Kaggle submission carries them
    qs = qrels.with_columns(pl.format('q{}', 'query_id').alias('query_id'), pl.format('doc{}', 'doc_id').alias('doc_id'))
    tstr = table.with_columns(pl.format('q{}', 'query_id').alias('query_id'), pl.format('doc{}', 'doc_id').alias('doc_id'))
    v4, tmin, tmed = timed(lambda: pfound(tstr, qs), a.repeat)
    res['ours_long_table_string_ids'] = {'pfound': v4, 'seconds_min': tmin, 'seconds_median': tmed}
    print(f'long table, string ids: pfound={v4:.6f} in {tmin:.2f}s', flush=True)
    del tstr
    rep, tmin, tmed = timed(lambda: retrieval_report(S, qrels, query_ids=qids, doc_ids=dids), 1)
    res['ours_retrieval_report_matrix'] = {'report': rep, 'seconds': tmin}
    print(f'retrieval_report (matrix): {tmin:.2f}s', flush=True)
    del table

    # the seed-style loop on subsets of queries, each with the full document count. Its two costs are timed apart:
    # the per-query filter over the whole prediction list (grows with nq*nd) and the per-document Python loop.
    sub = []
    for k in [int(x) for x in a.seed_queries.split(',')]:
        qsub = qrels.filter(pl.col('query_id') < k)
        preds = [{'doc_id': int(j), 'query_id': int(i), 'score': float(S[i, j])} for i in range(k) for j in range(nd)]
        ql = qsub.to_dicts()
        t = time.perf_counter(); ref = seed_pfound(ql, preds); dt = time.perf_counter() - t
        t = time.perf_counter(); _ = [p for p in preds if p['query_id'] == 0]; t_filter = time.perf_counter() - t
        ours = pfound(S[:k], qsub, query_ids=qids[:k], doc_ids=dids)
        sub.append({'queries': k, 'prediction_dicts': len(preds), 'seconds': dt, 'one_filter_seconds': t_filter,
                    'filter_seconds_per_dict': t_filter / len(preds), 'loop_seconds_per_query': dt / k - t_filter,
                    'pfound_seed': ref, 'pfound_ours': ours, 'abs_diff': abs(ref - ours)})
        print(f'seed loop on {k} queries x {nd}: {dt:.2f}s (one filter {t_filter:.3f}s), pfound seed={ref:.12f} ours={ours:.12f}', flush=True)
        del preds
    res['seed_loop_subsets'] = sub
    big = sub[-1]
    est = {'linear_lower_bound_seconds': big['seconds'] / big['queries'] * nq,
           'component_model_seconds': nq * (big['filter_seconds_per_dict'] * nq * nd + big['loop_seconds_per_query']),
           'component_model': 'nq * (filter_seconds_per_dict * nq*nd + loop_seconds_per_query), from the largest subset'}
    res['seed_loop_full_scale_estimate'] = {**est, 'measured': False,
        'note': f'extrapolated from the subset timings ({", ".join(str(x["queries"]) for x in sub)} queries x {nd} docs); '
                f'not run at {nq} queries (it needs {nq*nd:,} prediction dicts, several GB, in the seed format)'}
    best = res['ours_matrix']['seconds_min']
    res['speedup_vs_seed_estimate'] = {k: v / best for k, v in est.items() if k.endswith('seconds')}
    print(json.dumps({'seed_estimate': est, 'speedup': res['speedup_vs_seed_estimate']}, indent=1))
    res['machine_end'] = machine_info('cpu')
    res['note'] = 'CPU timings on a machine shared with other jobs (see load average): read them as orders of magnitude'
    save_json(res, a.out)
    print('wrote', a.out)


if __name__ == '__main__':
    main()
