"""Training throughput of recsys_nb.ner's loop against a plain Hugging Face `Trainer` set-up like the seed's.

Both fine-tune the same encoder (same initial weights, same first-sub-token labels, same batch size, gradient
accumulation, learning rate, schedule and precision) on the same sentences for the same number of epochs; only the
loop differs. The seed's set-up: `Trainer` with `DataCollatorForTokenClassification(pad_to_multiple_of=16)`, a random
sampler (no length grouping), truncation at `max_length`, fp16/bf16 on GPU. Ours: length-grouped batches, overlapping
windows instead of truncation, bf16 autocast on GPU. Needs `accelerate` for the Trainer side.

    python benchmarks/ner_bench.py --device auto --sentences 256 --epochs 1
    python benchmarks/ner_bench.py --device cuda --sentences 0 --epochs 3 --batch-size 8   # GPU, whole training part of fold 0

Writes benchmarks/results/ner_throughput_<device>.json.
"""
import argparse, json, os, platform, sys, time
from pathlib import Path
import numpy as np

def trainer_throughput(model, tok, windows, a, dev):
    "Train with a plain Trainer like the seed's; returns (seconds, windows/s)"
    import torch
    from transformers import Trainer, TrainingArguments, DataCollatorForTokenClassification
    # transformers 5: a float warmup_steps < 1 is the warmup ratio (the seed's warmup_ratio=0.1)
    ds = [{'input_ids': w.input_ids, 'attention_mask': [1] * len(w.input_ids), 'labels': w.labels} for w in windows]
    on_gpu = dev.type == 'cuda'
    bf16 = on_gpu and torch.cuda.is_bf16_supported()
    args = TrainingArguments(output_dir=str(Path(a.tmp)/'trainer'), learning_rate=a.lr, num_train_epochs=a.epochs,
                             per_device_train_batch_size=a.batch_size, gradient_accumulation_steps=a.grad_accum,
                             lr_scheduler_type='linear', warmup_steps=0.1, weight_decay=0.01, bf16=bf16, fp16=on_gpu and not bf16,
                             report_to='none', save_strategy='no', eval_strategy='no', logging_strategy='no',
                             use_cpu=not on_gpu, dataloader_num_workers=0, seed=a.seed, disable_tqdm=True)
    tr = Trainer(model=model, args=args, train_dataset=ds, data_collator=DataCollatorForTokenClassification(tok, pad_to_multiple_of=16))
    t0 = time.perf_counter(); out = tr.train()
    if on_gpu: torch.cuda.synchronize()
    sec = time.perf_counter() - t0
    return sec, len(windows) * a.epochs / sec, float(out.training_loss)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--device', default='auto'); ap.add_argument('--model', default='', help='encoder; empty: all-MiniLM-L6-v2')
    ap.add_argument('--data-dir', default=''); ap.add_argument('--sentences', type=int, default=256, help='training sentences (0: all of fold 0)')
    ap.add_argument('--epochs', type=int, default=1); ap.add_argument('--batch-size', type=int, default=8)
    ap.add_argument('--grad-accum', type=int, default=2); ap.add_argument('--lr', type=float, default=1e-4)
    ap.add_argument('--max-length', type=int, default=512, help='the seed: 512'); ap.add_argument('--seed', type=int, default=42)
    ap.add_argument('--threads', type=int, default=0, help='torch CPU threads (0: torch default)')
    ap.add_argument('--tmp', default='/tmp/ner_bench'); ap.add_argument('--out', default=str(Path(__file__).parent/'results'))
    a = ap.parse_args(argv)
    os.environ.setdefault('RECSYS_NB_PROGRESS', '0')
    import torch
    from recsys_nb import ner
    from recsys_nb.core import get_device, save_json
    if a.threads: torch.set_num_threads(a.threads)
    dev = get_device(a.device)
    tokens, tags, labels = ner.load_somd(a.data_dir)
    tr, ev = ner.fold_indices(len(tokens), 0, 4)
    tr = ner.downsample_negatives(tags, tr, 0.3, a.seed)
    if a.sentences: tr = tr[:a.sentences]
    tr_tok, tr_tag = [tokens[i] for i in tr], [tags[i] for i in tr]
    tok = ner.load_tokenizer(a.model)
    l2i = {l: i for i, l in enumerate(labels)}
    # the seed truncates: one window per sentence, cut at max_length
    seed_windows = [ner.encode_sentences(tok, [s], 10**6, 0, [t], l2i)[0] for s, t in zip(tr_tok, tr_tag)]
    for w in seed_windows:
        if len(w.input_ids) > a.max_length:
            w.input_ids = w.input_ids[:a.max_length - 1] + w.input_ids[-1:]; w.labels = w.labels[:a.max_length - 1] + [-100]
    n_sub = sum(len(w.input_ids) for w in seed_windows)
    from recsys_nb.core import machine_info
    res = {**machine_info(dev), 'model': a.model or 'all-MiniLM-L6-v2', 'sentences': len(tr_tok), 'subtokens': n_sub,
           'epochs': a.epochs, 'batch_size': a.batch_size, 'grad_accum': a.grad_accum, 'max_length': a.max_length}
    import transformers; res['transformers'] = transformers.__version__
    runs = {}
    for name in ('hf_trainer_seed_setup', 'recsys_nb_loop', 'hf_trainer_seed_setup_2', 'recsys_nb_loop_2'):
        torch.manual_seed(a.seed)
        model = ner.build_model(a.model, labels).to(dev)
        if name.startswith('hf_trainer'):
            sec, wps, loss = trainer_throughput(model, tok, seed_windows, a, dev)
        else:
            cfg = ner.NerConfig(lr=a.lr, epochs=a.epochs, batch_size=a.batch_size, grad_accum=a.grad_accum, max_length=a.max_length,
                                threshold=0.0, patience=0, seed=a.seed)
            r = ner.train_ner(model, tok, tr_tok, tr_tag, [tokens[i] for i in ev[:8]], [tags[i] for i in ev[:8]], labels, cfg, dev, verbose=False)
            sec = sum(h['train_seconds'] for h in r.history); wps = len(tr_tok) * a.epochs / sec
            loss = float(np.mean([h['train_loss'] for h in r.history]))
        runs[name] = {'train_seconds': round(sec, 3), 'sentences_per_s': round(len(tr_tok) * a.epochs / sec, 3),
                      'subtokens_per_s': round(n_sub * a.epochs / sec, 1), 'train_loss': round(loss, 4)}
        print(name, runs[name], flush=True)
        del model
    best = lambda k: max(runs[k]['sentences_per_s'], runs[k + '_2']['sentences_per_s'])
    res['runs'] = runs
    res['speedup_best_of_2'] = round(best('recsys_nb_loop') / best('hf_trainer_seed_setup'), 3)
    res['notes'] = ('each set-up ran twice (interleaved) on a CPU shared with other jobs; speedup compares the better run of each. '
                    'Our loop sorts windows by length inside chunks (little padding); the seed-like Trainer pads random batches. '
                    'train_loss is each loop\'s own report (Trainer 5.x sums its loss over the accumulation steps), not a quality measure.')
    if dev.type != 'cuda':
        res['gpu'] = 'not measured: no GPU this session'
        res['gpu_4fold_cv_minilm'] = 'not measured: no GPU this session (command: recsys-nb run ner --folds 0,1,2,3 --device cuda -p epochs 10 -p max_length 256)'
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    p = save_json(res, out/f"ner_throughput_{dev.type}.json")
    print(json.dumps(res, indent=1)); print('wrote', p)

if __name__ == '__main__': main()
