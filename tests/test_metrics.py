"""recsys_nb.metrics against independent references on random inputs: seqeval (strict IOB2), scikit-learn,
ranx, and plain re-implementations of the seeds' loops (PFound, CMN's get_eval, the NER seed's token sets)."""
import json, math, warnings
from collections import defaultdict

import numpy as np
import polars as pl
import pytest
import torch

from recsys_nb.metrics import (sampled_ranks, sampled_ranking_report, topk_items, full_ranking_report, judged_ranks,
                               pfound, retrieval_report, roc_auc, roc_curve, log_loss, bio_to_spans, span_prf,
                               token_prf, YANDEX_PREL)
from recsys_nb.results import collect_metrics

N_CASES = 300


# ------------------------------------------------------------------ plain references (loops, as the seeds wrote them)
def seed_pfound_score(y_true, y_score, pbreak=.15):
    "The retrieval seed's per-query loop (argsort reversed, so only tie-free scores are comparable)"
    indices = np.argsort(y_score)[::-1]
    y_max = max(y_true)
    pf, plook = 0., 1.
    for rank, i in enumerate(indices):
        r = (2. ** y_true[i] - 1.) / (2. ** y_max)
        pf += r * plook * pbreak ** rank
        plook *= 1. - r
    return pf


def seed_pfound(qrels_list, y_pred, pbreak=.15):
    "The retrieval seed's PFound: filters the whole prediction list once per query"
    zero = {'score': 0.0, 'relevance': 0.0}
    out = []
    for q in set(r['query_id'] for r in qrels_list):
        cur = [d for d in y_pred if d['query_id'] == q]
        y = {r['doc_id']: r for r in qrels_list if r['query_id'] == q}
        yp = np.array([d['score'] for d in cur]); yt = np.array([y.get(d['doc_id'], zero)['relevance'] for d in cur])
        out.append(seed_pfound_score(yt, yp, pbreak))
    return float(np.mean(out))


def loop_pfound(qrels_list, y_pred, variant='kaggle', pbreak=.15, prel=None):
    "Plain loop over documents sorted by (-score, doc_id): both variants, with ties"
    out = []
    gmax_all = max(r['relevance'] for r in qrels_list)
    for q in sorted(set(r['query_id'] for r in qrels_list)):
        y = {r['doc_id']: r['relevance'] for r in qrels_list if r['query_id'] == q}
        cur = sorted((d for d in y_pred if d['query_id'] == q), key=lambda d: (-d['score'], d['doc_id']))
        g = [y.get(d['doc_id'], 0) for d in cur]
        pf, plook = 0., 1.
        if variant == 'kaggle':
            gm = max(g, default=0)
            for i, gi in enumerate(g):
                r = (2. ** gi - 1) / 2. ** gm
                pf += r * plook * pbreak ** i; plook *= 1 - r
        else:
            for gi in g:
                p = (2. ** gi - 1) / 2. ** gmax_all if prel is None else prel[gi]
                pf += plook * p; plook *= (1 - p) * (1 - pbreak)
        out.append(pf)
    return float(np.mean(out))


def seed_get_eval(scores, index, top_n=10):
    "CMN seed's HR/NDCG: the positive sits at column `index`"
    ndcg = hr = 0.0
    for score in scores:
        arg_index = np.argsort(-score)[:top_n]
        if index in arg_index:
            ndcg += np.log(2.0) / np.log(arg_index.tolist().index(index) + 2.0); hr += 1.0
    return hr / len(scores), ndcg / len(scores)


def seed_token_scores(true_seqs, pred_seqs):
    "The NER seed's (document, token, label) set comparison with PRFScore counts"
    refs = {(d, t, l) for d, s in enumerate(true_seqs) for t, l in enumerate(s) if l != 'O'}
    preds = {(d, t, l) for d, s in enumerate(pred_seqs) for t, l in enumerate(s) if l != 'O'}
    c = defaultdict(lambda: [0, 0, 0])
    for ex in preds:
        if ex in refs: c[ex[-1][2:]][0] += 1; refs.remove(ex)
        else: c[ex[-1][2:]][1] += 1
    for _, _, l in refs: c[l[2:]][2] += 1
    tp, fp, fn = (sum(v[i] for v in c.values()) for i in range(3))
    p = tp / (tp + fp + 1e-100); r = tp / (tp + fn + 1e-100)
    return dict(c), (p, r, 2 * p * r / (p + r + 1e-100))


# ------------------------------------------------------------------ random generators
def rand_retrieval(rng, ties=False, str_ids=False, all_have_preds=True, min_rel=0):
    nq = int(rng.integers(1, 6))
    qrels, preds = [], []
    for q in range(nq):
        nd = int(rng.integers(1, 30))
        docs = rng.choice(100, nd, replace=False)
        scored = docs[rng.random(nd) < 0.8]
        if all_have_preds and len(scored) == 0: scored = docs[:1]
        judged = docs[rng.random(nd) < 0.5]
        if len(judged) == 0: judged = docs[:1]
        grades = rng.integers(min_rel, 4, len(judged))
        did = (lambda d: f'd{d:03d}') if str_ids else int
        qid = f'q{q}' if str_ids else q + 10
        qrels += [{'query_id': qid, 'doc_id': did(d), 'relevance': int(g)} for d, g in zip(judged, grades)]
        sc = rng.integers(0, 4, len(scored)).astype(float) if ties else rng.random(len(scored))
        preds += [{'query_id': qid, 'doc_id': did(d), 'score': float(s)} for d, s in zip(scored, sc)]
    rng.shuffle(preds)
    return qrels, preds


def to_cols(rows):
    return {k: [r[k] for r in rows] for k in rows[0]}


# ------------------------------------------------------------------ PFound
def test_pfound_matches_seed_loop_tie_free():
    rng = np.random.default_rng(0)
    for case in range(N_CASES):
        qrels, preds = rand_retrieval(rng, str_ids=case % 2 == 0)
        ref = seed_pfound(qrels, preds)
        fmt = case % 3
        p = preds if fmt == 0 else (pl.DataFrame(preds) if fmt == 1 else to_cols(preds))
        assert pfound(p, qrels) == pytest.approx(ref, rel=1e-10, abs=1e-300), case


def test_pfound_ties_and_yandex_match_plain_loop():
    rng = np.random.default_rng(1)
    for case in range(N_CASES):
        qrels, preds = rand_retrieval(rng, ties=True, str_ids=case % 2 == 1, all_have_preds=case % 4 != 0)
        if not preds: continue
        assert pfound(preds, qrels) == pytest.approx(loop_pfound(qrels, preds), rel=1e-10, abs=1e-300), case
        assert pfound(preds, qrels, variant='yandex') == pytest.approx(loop_pfound(qrels, preds, 'yandex'), rel=1e-10), case
        assert pfound(preds, qrels, variant='yandex', prel='yandex') == pytest.approx(
            loop_pfound(qrels, preds, 'yandex', prel=YANDEX_PREL), rel=1e-10), case
        pb = float(rng.uniform(0.05, 0.9))
        assert pfound(preds, qrels, pbreak=pb) == pytest.approx(loop_pfound(qrels, preds, pbreak=pb), rel=1e-10, abs=1e-300)


def test_pfound_matrix_equals_table():
    rng = np.random.default_rng(2)
    for case in range(100):
        nq, nd = int(rng.integers(1, 6)), int(rng.integers(1, 40))
        S = rng.integers(0, 5, (nq, nd)).astype(np.float32) if case % 2 else rng.random((nq, nd))
        qids, dids = [f'q{i}' for i in range(nq)], rng.permutation(1000)[:nd]
        qrels = [{'query_id': q, 'doc_id': int(d), 'relevance': int(rng.integers(0, 3))}
                 for q in qids for j, d in enumerate(dids) if j == 0 or rng.random() < 0.3]   # every query judged
        table = [{'query_id': q, 'doc_id': int(d), 'score': float(S[i, j])} for i, q in enumerate(qids) for j, d in enumerate(dids)]
        for v in ('kaggle', 'yandex'):
            a = pfound(torch.tensor(S) if case % 3 == 0 else S, qrels, variant=v, query_ids=qids, doc_ids=dids)
            assert a == pytest.approx(loop_pfound(qrels, table, v), rel=1e-9, abs=1e-300), case


def test_pfound_tie_rule_is_doc_id_ascending():
    qrels = [{'query_id': 1, 'doc_id': 'b', 'relevance': 1}]
    preds = [{'query_id': 1, 'doc_id': d, 'score': 0.5} for d in 'cab']
    assert pfound(preds, qrels) == pytest.approx(0.5 * 0.15 ** 1)       # 'a' first, then 'b'
    assert pfound(preds[::-1], qrels) == pfound(preds, qrels)             # row order does not matter


def test_pfound_query_without_predictions_counts_zero():
    qrels = [{'query_id': 1, 'doc_id': 1, 'relevance': 1}, {'query_id': 2, 'doc_id': 1, 'relevance': 1}]
    preds = [{'query_id': 1, 'doc_id': 1, 'score': 1.0}]
    assert pfound(preds, qrels) == pytest.approx(0.25)


def test_pfound_bad_input():
    qrels = {'query_id': [1, 1], 'doc_id': [1, 2], 'relevance': [1, 0]}
    preds = {'query_id': [1, 1], 'doc_id': [1, 2], 'score': [0.3, 0.1]}
    with pytest.raises(ValueError, match='qrels is empty'): pfound(preds, {'query_id': [], 'doc_id': [], 'relevance': []})
    with pytest.raises(ValueError, match=r'not in the qrels, e.g. \[7\]'): pfound({**preds, 'query_id': [1, 7]}, qrels)
    with pytest.raises(ValueError, match='NaN'): pfound({**preds, 'score': [0.3, float('nan')]}, qrels)
    with pytest.raises(ValueError, match='length mismatch'): pfound({**preds, 'score': [0.3]}, qrels)
    with pytest.raises(ValueError, match='missing column'): pfound({'query_id': [1], 'doc_id': [1]}, qrels)
    with pytest.raises(ValueError, match='missing value'): pfound(pl.DataFrame({**preds, 'score': [0.3, None]}), qrels)
    with pytest.raises(ValueError, match='>= 0'): pfound(preds, {**qrels, 'relevance': [1, -1]})
    with pytest.raises(ValueError, match='more than once'): pfound(preds, {**qrels, 'doc_id': [1, 1]})
    with pytest.raises(ValueError, match='scored twice'): pfound({**preds, 'doc_id': [1, 1]}, qrels)
    with pytest.raises(ValueError, match='pbreak'): pfound(preds, qrels, pbreak=1.5)
    S = np.array([[0.3, np.nan]])
    with pytest.raises(ValueError, match='NaN'): pfound(S, qrels, query_ids=[1], doc_ids=[1, 2])
    with pytest.raises(ValueError, match='length mismatch'): pfound(S[:, :1], qrels, query_ids=[1], doc_ids=[1, 2])
    with pytest.raises(ValueError, match='not in the qrels'): pfound(np.zeros((1, 2)), qrels, query_ids=[3], doc_ids=[1, 2])
    with pytest.raises(ValueError, match='unique'): pfound(np.zeros((1, 2)), qrels, query_ids=[1], doc_ids=[1, 1])


def test_pfound_mixed_id_types_are_aligned():
    qrels = {'query_id': ['1'], 'doc_id': ['5'], 'relevance': [1]}
    assert pfound({'query_id': [1, 1], 'doc_id': [4, 5], 'score': [0.9, 0.1]}, qrels) == pytest.approx(0.5 * 0.15)
    qi32 = pl.DataFrame({'query_id': [1], 'doc_id': [5], 'relevance': [1]}, schema_overrides={'query_id': pl.Int32, 'doc_id': pl.UInt16})
    assert pfound(pl.DataFrame({'query_id': [1, 1], 'doc_id': [4, 5], 'score': [0.9, 0.1]}), qi32) == pytest.approx(0.5 * 0.15)


# ------------------------------------------------------------------ ranking metrics vs ranx
@pytest.fixture(scope='module')
def ranx():
    warnings.filterwarnings('ignore')
    import ranx
    return ranx


def test_full_ranking_matches_ranx(ranx):
    rng = np.random.default_rng(3)
    n, m, K = N_CASES, 60, 20
    scores = rng.integers(0, 8, (n, m)).astype(float)
    exclude = [rng.choice(m, int(rng.integers(0, 10)), replace=False) for _ in range(n)]
    top = topk_items(scores, K, exclude=exclude)
    targets = [np.setdiff1d(rng.choice(m, int(rng.integers(0, 8)), replace=False), e) for e in exclude]
    ks = [1, 3, 5, 10, 20]
    ours = full_ranking_report(top, targets, ks=ks)
    assert full_ranking_report(scores, targets, ks=ks, exclude=exclude) == ours      # the score-matrix route
    keep = [u for u in range(n) if len(targets[u])]
    assert ours['n_queries'] == len(keep)
    qrels = ranx.Qrels({f'u{u}': {f'i{i}': 1 for i in targets[u]} for u in keep})
    run = ranx.Run({f'u{u}': {f'i{i}': float(K - j) for j, i in enumerate(top[u])} for u in keep})
    names = [f'{mt}@{k}' for k in ks for mt in ('ndcg', 'recall', 'precision', 'mrr', 'hit_rate')]
    ref = ranx.evaluate(qrels, run, names, make_comparable=True)
    for nm in names:
        assert ours[nm.replace('hit_rate', 'hr')] == pytest.approx(float(ref[nm]), rel=1e-9, abs=1e-12), nm


def test_retrieval_report_matches_ranx(ranx):
    rng = np.random.default_rng(4)
    qrels, preds = [], []
    for q in range(N_CASES):
        nd = int(rng.integers(2, 40)); docs = rng.choice(200, nd, replace=False)
        judged = docs[: int(rng.integers(1, nd))]
        g = rng.integers(0, 4, len(judged)); g[0] = rng.integers(1, 4)      # at least one relevant judgement
        qrels += [{'query_id': f'q{q}', 'doc_id': f'd{d}', 'relevance': int(x)} for d, x in zip(judged, g)]
        scored = docs[rng.random(nd) < 0.85]
        preds += [{'query_id': f'q{q}', 'doc_id': f'd{d}', 'score': float(s)} for d, s in zip(scored, rng.random(len(scored)))]
    ks = [1, 5, 10, 30]
    ours = retrieval_report(pl.DataFrame(preds), pl.DataFrame(qrels), ks=ks)
    qd, rd = defaultdict(dict), defaultdict(dict)
    for r in qrels: qd[r['query_id']][r['doc_id']] = r['relevance']
    for r in preds: rd[r['query_id']][r['doc_id']] = r['score']
    for q in qd: rd[q]  # queries without any scored document stay in the run (empty)
    names = [f'{mt}@{k}' for k in ks for mt in ('ndcg', 'recall', 'precision', 'mrr', 'hit_rate')]
    ref = ranx.evaluate(ranx.Qrels(dict(qd)), ranx.Run(dict(rd)), names, make_comparable=True)
    for nm in names:
        assert ours[nm.replace('hit_rate', 'hr')] == pytest.approx(float(ref[nm]), rel=1e-9, abs=1e-12), nm
    assert ours['pfound'] == pytest.approx(loop_pfound(qrels, preds), rel=1e-10)
    assert ours['pfound_yandex'] == pytest.approx(loop_pfound(qrels, preds, 'yandex'), rel=1e-10)


def test_topk_items_matches_lexsort():
    rng = np.random.default_rng(5)
    for case in range(N_CASES):
        n, m = int(rng.integers(1, 20)), int(rng.integers(1, 50)); k = int(rng.integers(1, m + 3))
        s = rng.integers(0, 4, (n, m)).astype(float) if case % 2 else rng.random((n, m)).astype(np.float32)
        ex = [rng.choice(m, int(rng.integers(0, m)), replace=False) for _ in range(n)] if case % 3 == 0 else None
        s2 = s.astype(float).copy()
        if ex is not None:
            for u, e in enumerate(ex): s2[u, e] = -np.inf
        ref = np.stack([np.lexsort((np.arange(m), -row))[:min(k, m)] for row in s2])
        got = topk_items(torch.tensor(s) if case % 5 == 0 else s, k, exclude=ex, block=int(rng.integers(1, 8)))
        np.testing.assert_array_equal(got, ref)


def test_full_ranking_bad_input():
    top = np.array([[0, 1], [2, 3]])
    with pytest.raises(ValueError, match='length mismatch'): full_ranking_report(top, [[1]], ks=[1])
    with pytest.raises(ValueError, match='no query/user has a relevant item'): full_ranking_report(top, [[], []], ks=[1])
    with pytest.raises(TypeError, match='integers'): full_ranking_report(top.astype(str), [[1], [2]], ks=[1])
    with pytest.raises(ValueError, match='exclude applies'): full_ranking_report(top, [[1], [2]], ks=[1], exclude=[[0], [1]])
    with pytest.raises(ValueError, match='NaN'): topk_items(np.array([[0.1, np.nan]]), 1)
    with pytest.raises(ValueError, match='out of range'): topk_items(np.zeros((1, 3)), 1, exclude=[[3]])


# ------------------------------------------------------------------ sampled ranking
def test_sampled_ranking_matches_seed_get_eval():
    rng = np.random.default_rng(6)
    for case in range(N_CASES):
        n, N = int(rng.integers(1, 30)), int(rng.integers(1, 120))
        pos, neg = rng.normal(size=n), rng.normal(size=(n, N))
        scores = np.concatenate([neg, pos[:, None]], 1)      # the seed puts the positive last
        ks = [1, 5, 10]
        rep = sampled_ranking_report(torch.tensor(pos) if case % 2 else pos, neg, ks=ks)
        for k in ks:
            hr, nd = seed_get_eval(scores, N, k)
            assert rep[f'hr@{k}'] == pytest.approx(hr) and rep[f'ndcg@{k}'] == pytest.approx(nd), (case, k)


def test_sampled_ranks_ties_count_against_positive():
    rng = np.random.default_rng(7)
    pos = rng.integers(0, 3, 500).astype(float); neg = rng.integers(0, 3, (500, 50)).astype(float)
    ref = np.array([sum(x >= p for x in row) for p, row in zip(pos, neg)])
    np.testing.assert_array_equal(sampled_ranks(pos, neg), ref)
    assert sampled_ranking_report(np.ones(10), np.ones((10, 100)))['hr@10'] == 0.0
    with pytest.raises(ValueError, match='NaN'): sampled_ranks([np.nan], [[1.0]])
    with pytest.raises(ValueError, match='length mismatch'): sampled_ranks([1.0, 2.0], [[1.0]])


# ------------------------------------------------------------------ binary classification vs scikit-learn
def test_binary_metrics_match_sklearn():
    from sklearn import metrics as skm
    rng = np.random.default_rng(8)
    for case in range(N_CASES):
        n = int(rng.integers(2, 200))
        y = rng.integers(0, 2, n); y[0], y[1] = 0, 1
        s = np.round(rng.random(n), int(rng.integers(1, 4)))          # many ties
        assert roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), rel=1e-12), case
        f, t, th = roc_curve(y, s); f2, t2, th2 = skm.roc_curve(y, s, drop_intermediate=False)
        np.testing.assert_allclose(f, f2); np.testing.assert_allclose(t, t2); np.testing.assert_array_equal(th, th2)
        p = np.clip(rng.random(n), 1e-6, 1 - 1e-6)
        assert log_loss(y, p) == pytest.approx(skm.log_loss(y, p), rel=1e-10), case


def test_binary_bad_input():
    with pytest.raises(ValueError, match='length mismatch'): roc_auc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match='NaN'): roc_auc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match='only one class'): roc_curve([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match='0/1 labels'): log_loss([0, 3], [0.1, 0.2])
    with pytest.raises(ValueError, match=r'\[0, 1\]'): log_loss([0, 1], [0.1, 2.0])
    with pytest.raises(ValueError, match='length mismatch'): log_loss([0, 1], [0.1])


# ------------------------------------------------------------------ entity extraction vs seqeval
TAGS = ['O', 'O', 'O', 'B-App', 'I-App', 'B-Ver', 'I-Ver', 'B-Prog-Env', 'I-Prog-Env']


def rand_seqs(rng, n):
    return [[TAGS[i] for i in rng.integers(0, len(TAGS), int(rng.integers(1, 16)))] for _ in range(n)]


@pytest.mark.filterwarnings('ignore::RuntimeWarning')   # seqeval averages empty per-type arrays
def test_spans_match_seqeval_strict_iob2():
    from seqeval.scheme import Entities, IOB2
    from seqeval.metrics import classification_report
    rng = np.random.default_rng(9)
    for case in range(N_CASES):
        n = int(rng.integers(1, 6)); gold, pred = rand_seqs(rng, n), rand_seqs(rng, n)
        pred = [p[:len(g)] + ['O'] * (len(g) - len(p)) for g, p in zip(gold, pred)]
        ents = Entities(gold, IOB2).entities
        for i, g in enumerate(gold):
            assert bio_to_spans(g) == [(e.tag, e.start, e.end) for e in ents[i]], (case, g)
        ours = span_prf(gold, pred)
        ref = classification_report(gold, pred, mode='strict', scheme=IOB2, output_dict=True, zero_division=0)
        for key in ('precision', 'recall', 'f1'):
            assert ours['micro'][key] == pytest.approx(float(ref['micro avg'][key if key != 'f1' else 'f1-score'])), case
        assert ours['micro']['support'] == int(ref['micro avg']['support'])
        for t, v in ref.items():
            if t.endswith('avg'): continue
            assert ours['per_type'][t]['f1'] == pytest.approx(float(v['f1-score'])), (case, t)
            assert ours['per_type'][t]['support'] == int(v['support'])


def test_token_prf_matches_seed_sets():
    rng = np.random.default_rng(10)
    for case in range(N_CASES):
        n = int(rng.integers(1, 6)); gold, pred = rand_seqs(rng, n), rand_seqs(rng, n)
        pred = [p[:len(g)] + ['O'] * (len(g) - len(p)) for g, p in zip(gold, pred)]
        counts, (p, r, f) = seed_token_scores(gold, pred)
        ours = token_prf(gold, pred)
        assert (ours['micro']['precision'], ours['micro']['recall'], ours['micro']['f1']) == pytest.approx((p, r, f)), case
        for t, (tp, fp, fn) in counts.items():
            assert (ours['per_type'][t]['tp'], ours['per_type'][t]['fp'], ours['per_type'][t]['fn']) == (tp, fp, fn)


def test_bio_bad_input():
    with pytest.raises(ValueError, match='length mismatch'): span_prf([['O']], [['O'], ['O']])
    with pytest.raises(ValueError, match='sequence 1'): token_prf([['O'], ['O', 'O']], [['O'], ['O']])
    with pytest.raises(ValueError, match="tag 'S-App'"): span_prf([['S-App']], [['O']])
    with pytest.raises(ValueError, match="tag 'B-'"): bio_to_spans(['B-'])


# ------------------------------------------------------------------ collect_metrics
def test_collect_metrics(tmp_path):
    for k in (0, 2):
        (tmp_path / f'fold_{k}').mkdir()
        (tmp_path / f'fold_{k}' / 'metrics.json').write_text(json.dumps(
            {'models': {'m': {'auc': 0.5 + k, 'n': 3, 'flag': False, 'x': None}, 'base': {'auc': 0.5}}, 'device': 'cpu'}))
    (tmp_path / 'fold_1').mkdir()                                       # a failed fold: no metrics.json
    df = collect_metrics(tmp_path)
    assert df.columns == ['fold', 'model', 'metric', 'value'] and df['fold'].unique().to_list() == [0, 2]
    assert df.filter((pl.col('model') == 'm') & (pl.col('metric') == 'auc'))['value'].to_list() == [0.5, 2.5]
    assert set(df['metric']) == {'auc', 'n'}
    (tmp_path / 'fold_2' / 'metrics.json').write_text('{"models": ')
    with pytest.raises(ValueError, match='fold_2.*invalid JSON'): collect_metrics(tmp_path)
    (tmp_path / 'fold_2' / 'metrics.json').write_text('{"auc": 1}')
    with pytest.raises(ValueError, match="'models'"): collect_metrics(tmp_path)


def test_collect_metrics_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='not found'): collect_metrics(tmp_path / 'nope')
    (tmp_path / 'fold_0').mkdir()
    with pytest.raises(FileNotFoundError, match='no fold_<k>/metrics.json'): collect_metrics(tmp_path)
