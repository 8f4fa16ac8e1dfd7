"Task ner: SOMD loaders and their errors, alignment/windowing round trips (BERT, RoBERTa, DeBERTa tokenizers), decoding, case feature, runner runs with a tiny model"
import subprocess, sys
from pathlib import Path
import numpy as np
import pytest
from recsys_nb import ner
from recsys_nb.core import load_json, seed_everything
from recsys_nb.data import make_synthetic

L2I = {l: i for i, l in enumerate(ner.SOMD_LABELS)}

@pytest.fixture(scope='module')
def tok(): return ner.load_tokenizer()

@pytest.fixture(scope='module')
def tiny(tmp_path_factory): return ner.make_tiny_encoder(tmp_path_factory.mktemp('tiny'), hidden_size=32, num_layers=1)

@pytest.fixture(scope='module')
def syn(tmp_path_factory): return make_synthetic('ner', tmp_path_factory.mktemp('syn')/'somd', size=64, seed=3)

def _write(d:Path, texts:str, ents:str|None=None):
    d.mkdir(parents=True, exist_ok=True); (d/'train_texts.txt').write_text(texts)
    if ents is not None: (d/'train_entities.txt').write_text(ents)
    return d

# ------------------------------------------------------------------ loaders
def test_loader_reads_and_checks(tmp_path):
    d = _write(tmp_path/'ok', 'We used SPSS 24 .\r\nNothing here .\r\n', 'O O B-Application B-Version O\r\nO O O\r\n')
    tokens, tags, labels = ner.load_somd(d)
    assert tokens[0] == ['We', 'used', 'SPSS', '24', '.'] and tags[1] == ['O'] * 3 and labels == ner.SOMD_LABELS

@pytest.mark.parametrize('texts,ents,msg', [
    ('a b c\nd e\n', 'O O O\nO O O\n', 'train_entities.txt: line 2 has 3 tags for 2 tokens'),
    ('a b c\nd e\n', 'O O O\n', '1 lines of tags for 2 sentences'),
    ('a b c\n\nd e\n', 'O O O\n\nO O\n', 'train_texts.txt: line 2 is empty'),
    ('a b\n', 'O B-Gadget\n', "line 1, tag 2: unknown tag 'B-Gadget'"),
    ('a b\n', 'O Application\n', "line 1, tag 2: 'Application' is not a BIO tag"),
])
def test_loader_errors_name_file_and_line(tmp_path, texts, ents, msg):
    d = _write(tmp_path/'bad', texts, ents)
    with pytest.raises(ValueError, match=msg.replace('(', r'\(')): ner.load_somd(d)

def test_labels_from_data_accept_new_types(tmp_path):
    d = _write(tmp_path/'new', 'a b\n', 'O B-Gadget\n')
    assert ner.load_somd(d, labels='data')[2] == ['O', 'B-Gadget', 'I-Gadget']

def test_missing_folder_lists_places(tmp_path):
    with pytest.raises(FileNotFoundError, match='data_dir parameter'): ner.load_somd(tmp_path/'nowhere')

def test_synthetic_has_somd_format(syn):
    tokens, tags, _ = ner.load_somd(syn)
    assert len(tokens) == 64 and len(ner.read_texts(syn/'test_texts.txt')) == 12
    rel = (syn/'train_relations.txt').read_text().split('\n')[:-1]
    assert len(rel) == 64 and any('Version_of\t' in r for r in rel)
    assert any(all(t == 'O' for t in s) for s in tags) and any(t.startswith('I-') for s in tags for t in s)

# ------------------------------------------------------------------ folds
def test_folds_and_negative_downsampling_train_only():
    tags = [['O']] * 40 + [['B-URL']] * 40
    tr, ev = ner.fold_indices(80, 2, 4)
    assert (ev % 4 == 2).all() and len(ev) == 20 and not set(tr) & set(ev)
    kept = ner.downsample_negatives(tags, tr, 0.3, seed=0)
    n_neg = sum(tags[i] == ['O'] for i in kept)
    assert n_neg == round(30 * 0.3) and sum(tags[i] != ['O'] for i in kept) == 30

# ------------------------------------------------------------------ alignment and windows
def _round_trip(tok, tokens, tags, **kw):
    ws = ner.encode_sentences(tok, tokens, tags=tags, label2id=L2I, **kw)
    back = ner.windows_to_word_labels(ws, [len(s) for s in tokens])
    return ws, [[ner.SOMD_LABELS[i] for i in b] for b in back]

def test_alignment_first_subtoken(tok):
    ws, back = _round_trip(tok, [['GraphPad', 'Prism', 'v8.0.1']], [['B-Application', 'I-Application', 'B-Version']])
    w = ws[0]
    assert len(w.input_ids) > 5                                # words split into several sub-tokens
    assert [l for l in w.labels if l != -100] == [L2I['B-Application'], L2I['I-Application'], L2I['B-Version']]
    assert w.labels[0] == -100 and w.labels[-1] == -100        # special tokens
    assert back == [['B-Application', 'I-Application', 'B-Version']]

@pytest.mark.parametrize('max_length,stride', [(12, 0), (16, 4), (40, 12), (512, 64)])
def test_windows_round_trip_long_sentences(tok, max_length, stride):
    rng = np.random.default_rng(max_length)
    vocab = ['alpha', 'GraphPad', ',', 'v8.0.1', 'https://imagej.net/ij/index.html', 'Prism', '\u200b', 'x']
    tokens = [[str(w) for w in rng.choice(vocab, n)] for n in (3, 57, 140)]
    tags = [[str(t) for t in rng.choice(ner.SOMD_LABELS, len(s))] for s in tokens]
    ws, back = _round_trip(tok, tokens, tags, max_length=max_length, stride=stride)
    assert back == tags                                        # no word lost, every label read back
    assert max(len(w.input_ids) for w in ws) <= max_length
    if max_length < 100: assert sum(w.sentence == 2 for w in ws) > 2   # the long sentence got several windows

def test_windows_overlap_and_mean_probabilities(tok, tiny):
    model = ner.build_model(str(tiny))
    tk = ner.load_tokenizer(str(tiny))
    sent = [['word'] * 30]
    ws = ner.encode_sentences(tk, sent, max_length=12, stride=4)
    covered = np.concatenate([w.word_index[w.word_index >= 0] for w in ws])
    assert len(covered) > 30 and set(covered) == set(range(30))          # overlapping windows cover all words
    probs, _ = ner.predict_windows(model, ws, [30], device='cpu')
    np.testing.assert_allclose(probs[0].sum(-1), 1, rtol=1e-5)

def test_all_subtokens_labelled(tok):
    ws = ner.encode_sentences(tok, [['GraphPad']], tags=[['B-Application']], label2id=L2I, label_all_subtokens=True)
    assert ws[0].labels[1:-1] == [L2I['B-Application']] * (len(ws[0].input_ids) - 2)

# ------------------------------------------------------------------ decoding and scores
def test_threshold_decoding():
    labels = ['O', 'B-A', 'I-A', 'B-B']
    p = [np.array([[0.55, 0.05, 0.1, 0.3], [0.9, 0.05, 0.03, 0.02], [0.4, 0.1, 0.45, 0.05]])]
    assert ner.decode(p, labels, 0.0) == [['O', 'O', 'B-A']]
    assert ner.decode(p, labels, 0.0, repair=False) == [['O', 'O', 'I-A']]
    assert ner.decode(p, labels, 0.6) == [['B-B', 'O', 'B-A']]
    assert ner.decode(p, labels, 0.95) == [['B-B', 'B-A', 'I-A']]

def test_scores_and_gazetteer():
    tr_tok = [['We', 'used', 'SPSS', 'and', 'R', '.'], ['R', 'was', 'used']]
    tr_tag = [['O', 'O', 'B-Application', 'O', 'B-ProgrammingEnvironment', 'O'], ['B-ProgrammingEnvironment', 'O', 'O']]
    g = ner.Gazetteer().fit(tr_tok, tr_tag)
    pred = g.predict([['SPSS', 'and', 'R'], ['Stata', '.']])
    assert pred == [['B-Application', 'O', 'B-ProgrammingEnvironment'], ['O', 'O']]
    s = ner.score_tags([['B-Application', 'O', 'B-ProgrammingEnvironment'], ['B-Application', 'O']], pred)
    assert s['span_precision'] == 1.0 and abs(s['span_recall'] - 2 / 3) < 1e-9 and s['span_recall-Application'] == 0.5

def test_viterbi_gives_valid_iob2_and_fixes_type_breaks():
    labels = ner.SOMD_LABELS
    rng = np.random.default_rng(0)
    probs = [rng.dirichlet(np.ones(len(labels)) * 0.3, size=n) for n in (1, 7, 40)]
    allowed, start = ner.bio_constraints(labels)
    for tags in ner.decode(probs, labels, viterbi=True):
        ids = [labels.index(t) for t in tags]
        assert start[ids[0]] and all(allowed[a, b] for a, b in zip(ids, ids[1:]))   # never an orphan or retyped I-
    L = ['O', 'B-A', 'I-A', 'B-B', 'I-B']
    p = [np.array([[0.05, 0.9, 0.0, 0.05, 0.0], [0.2, 0.0, 0.35, 0.0, 0.45], [0.1, 0.0, 0.5, 0.0, 0.4]])]
    assert ner.decode(p, L) == [['B-A', 'B-B', 'B-A']]                 # argmax + repair: three broken entities
    assert ner.decode(p, L, viterbi=True) == [['B-A', 'I-A', 'I-A']]   # the best valid path: one entity
    # brute force over all sequences of length 3 agrees with the dynamic programme
    import itertools
    best = max((s for s in itertools.product(range(5), repeat=3) if ner.bio_constraints(L)[1][s[0]] and
                all(ner.bio_constraints(L)[0][a, b] for a, b in zip(s, s[1:]))), key=lambda s: np.prod([p[0][i, k] for i, k in enumerate(s)]))
    assert [L[k] for k in best] == ner.decode(p, L, viterbi=True)[0]

def test_unseen_mention_recall():
    tr_tok = [['We', 'used', 'SPSS', 'and', 'GraphPad', 'Prism', '.']]
    tr_tag = [['O', 'O', 'B-Application', 'O', 'B-Application', 'I-Application', 'O']]
    ev_tok = [['SPSS', ',', 'Stata', 'and', 'GraphPad', 'Prism', '9', 'or', 'Prism']]
    ev_tag = [['B-Application', 'O', 'B-Application', 'O', 'B-Application', 'I-Application', 'B-Version', 'O', 'B-Application']]
    pred = [['B-Application', 'O', 'B-Application', 'O', 'B-Application', 'O', 'B-Version', 'O', 'O']]
    r = ner.mention_recall(tr_tok, tr_tag, ev_tok, ev_tag, pred)
    # seen: SPSS (found), GraphPad Prism (boundary wrong); unseen: Stata (found), 9 (found), Prism alone (missed)
    assert r == {'unseen_recall': 2 / 3, 'seen_recall': 0.5, 'n_unseen': 3, 'n_seen': 2}
    gaz = ner.Gazetteer().fit(tr_tok, tr_tag)
    assert ner.mention_recall(tr_tok, tr_tag, ev_tok, ev_tag, gaz.predict(ev_tok))['unseen_recall'] == 0.0
    assert np.isnan(ner.mention_recall(tr_tok, tr_tag, [['x']], [['O']], [['O']])['unseen_recall'])

def test_word_shapes_reach_every_subtoken(tok):
    words = ['We', 'used', 'SPSS', 'v8.0.1', 'and', 'ImageJ', 'https://imagej.net', 'R', '.']
    ws = ner.encode_sentences(tok, [words])
    w = ws[0]
    enc = tok(words, is_split_into_words=True)
    wid = enc.word_ids()
    assert w.shapes.tolist() == [0 if i is None else ner.word_shape(words[i]) for i in wid]
    assert [ner.SHAPES[ner.word_shape(x)] for x in ('SPSS', 'spss', 'Spss', 'R', 'ImageJ')] == ['UPPER', 'lower', 'Title', 'upper1', 'miXed']
    # MiniLM is uncased: SPSS and spss give the same sub-tokens, only the shape ids tell them apart
    a, b = ner.encode_sentences(tok, [['SPSS']])[0], ner.encode_sentences(tok, [['spss']])[0]
    assert a.input_ids == b.input_ids and a.shapes.tolist() != b.shapes.tolist()

def test_case_feature_changes_predictions_only_through_shapes(tiny):
    import torch
    m = ner.build_model(str(tiny), case_feature=True)
    ws = ner.encode_sentences(ner.load_tokenizer(str(tiny)), [['SPSS', 'was', 'used'], ['spss', 'was', 'used']])
    p0, _ = ner.predict_windows(m, ws, [3, 3], device='cpu')
    np.testing.assert_allclose(p0[0], p0[1], atol=1e-6)        # zero-initialised shape embedding: no effect yet
    with torch.no_grad(): m.shape_embedding.weight.normal_()
    p1, _ = ner.predict_windows(m, ws, [3, 3], device='cpu')
    assert np.abs(p1[0] - p1[1]).max() > 1e-3                  # now case reaches the output
    plain = ner.build_model(str(tiny))
    assert len(plain.head_parameters()) == 2 and len(m.head_parameters()) == 3

@pytest.mark.parametrize('arch', ['roberta', 'deberta-v2'])
def test_other_tokenizers_align_train_and_save(tmp_path, arch, syn):
    "RoBERTa (byte-level BPE, prefix space) and DeBERTa-v3 (Metaspace unigram) tokenizers: windows, training, save/load"
    path = ner.make_tiny_encoder(tmp_path/arch, hidden_size=32, num_layers=1, arch=arch)
    tk = ner.load_tokenizer(str(path))
    assert tk.is_fast and (arch != 'roberta' or tk.add_prefix_space)
    rng = np.random.default_rng(1)
    vocab = ['We', 'used', 'GraphPad', 'Prism', 'v8.0.1', 'https://imagej.net', '​', 'zzqx', 'R', ',']
    tokens = [[str(w) for w in rng.choice(vocab, n)] for n in (2, 25, 70)]
    tags = [[str(t) for t in rng.choice(ner.SOMD_LABELS, len(s))] for s in tokens]
    ws, back = _round_trip(tk, tokens, tags, max_length=16, stride=4)
    assert back == tags and max(len(w.input_ids) for w in ws) <= 16
    assert all(w.shapes[0] == 0 and w.shapes[len(w.input_ids) - 1] == 0 for w in ws)   # special tokens: shape 0
    tokens, tags, labels = ner.load_somd(syn)
    cfg = ner.NerConfig(lr=1e-2, head_lr=1e-2, epochs=1, batch_size=8, grad_accum=1, max_length=24, stride=6, threshold=0.0,
                        patience=0, case_feature=True, viterbi=True)
    m = ner.build_model(str(path), labels, case_feature=True)
    res = ner.train_ner(m, tk, tokens[:40], tags[:40], tokens[40:], tags[40:], labels, cfg, 'cpu', verbose=False)
    assert np.isfinite(res.history[0]['train_loss']) and 0 <= res.best_scores['span_f1'] <= 1
    ner.save_ner_model(res.model, tk, tmp_path/'saved', labels, cfg)
    m2, tk2, meta = ner.load_ner_model(tmp_path/'saved')
    ws = ner.encode_sentences(tk2, tokens[40:], 24, 6)
    p_live, _ = ner.predict_windows(res.model, ws, [len(s) for s in tokens[40:]], device='cpu')
    p_saved, _ = ner.predict_windows(m2, ws, [len(s) for s in tokens[40:]], device='cpu')
    np.testing.assert_allclose(np.concatenate(p_live), np.concatenate(p_saved), atol=1e-5)

def test_same_seed_same_scores(tiny, syn):
    tokens, tags, labels = ner.load_somd(syn)
    cfg = ner.NerConfig(lr=5e-3, head_lr=1e-2, epochs=2, batch_size=8, grad_accum=1, max_length=24, stride=6, patience=0,
                        case_feature=True, viterbi=True, class_weight_power=0.5)
    def run(seed):   # as run_fold does: seed, build the model (fresh head), train
        seed_everything(seed)
        return ner.train_ner(ner.build_model(str(tiny), labels, case_feature=True), ner.load_tokenizer(str(tiny)), tokens[:48], tags[:48],
                             tokens[48:], tags[48:], labels, ner.NerConfig(**{**cfg.__dict__, 'seed': seed}), 'cpu', verbose=False).history
    h1, h2, h3 = run(1), run(1), run(2)
    assert [h['train_loss'] for h in h1] == [h['train_loss'] for h in h2] and [h['span_f1'] for h in h1] == [h['span_f1'] for h in h2]
    assert [h['train_loss'] for h in h1] != [h['train_loss'] for h in h3]

# ------------------------------------------------------------------ pipeline notebook through the runner
def test_runner_folds_then_ensemble(tmp_path, tiny, syn):
    from recsys_nb.runner import run_task
    out = tmp_path/'outputs'
    from recsys_nb.registry import load_registry
    p = {**load_registry()['ner']['tiny'], 'model_name': str(tiny), 'data_dir': str(syn)}   # the test preset of tasks.yaml
    res = run_task('ner', folds=[0, 1], params=p, out=out)
    assert res.ok, res.errors
    for f in (0, 1):
        d = res.run_dir/f'fold_{f}'
        m = load_json(d/'metrics.json')
        assert {'ner', 'gazetteer'} <= set(m['models']) and 0 <= m['models']['ner']['span_f1'] <= 1 and m['fold'] == f
        assert m['n_eval'] == 16 and len(m['history']) >= 1
        ner_m = m['models']['ner']
        assert {'unseen_recall', 'seen_recall', 'n_unseen', 'n_seen'} <= set(ner_m) and any(k.startswith('span_f1-') for k in ner_m)
        assert m['models']['gazetteer']['unseen_recall'] in (0.0,) or m['models']['gazetteer']['n_unseen'] == 0
        assert all('span_f1_viterbi' in h for h in m['history'])
        assert load_json(d/'eval_result.json')['eval_f1'] == m['models']['ner']['token_f1']
        for png in ('per_type_f1.png', 'confusion.png', 'learning_curves.png'): assert (d/png).stat().st_size > 1000
        assert (d/'model'/'model.safetensors').exists() and (d/'test_entities.txt').exists()
    # the fold ensemble, as a pipeline run ('latest' already points at the new run when it starts) and as a command
    ens = run_task('ner', params={'ensemble_from': 'latest', 'data_dir': str(syn), 'device': 'cpu', 'num_threads': 1}, out=out)
    assert ens.ok, ens.errors
    d = ens.run_dir/'fold_0'
    tags, tokens = ner.read_texts(d/'test_entities.txt'), ner.read_texts(syn/'test_texts.txt')
    assert [len(t) for t in tags] == [len(s) for s in tokens]
    m = load_json(d/'metrics.json')
    assert m['n_fold_models'] == 2 and m['ensemble_from'] == str(res.run_dir.resolve()) and 'ner_cv_mean' in m['models'] and 'gazetteer_cv_mean' in m['models']
    mean = np.mean([load_json(res.run_dir/f'fold_{f}'/'metrics.json')['models']['ner']['span_f1'] for f in (0, 1)])
    assert abs(m['models']['ner_cv_mean']['span_f1'] - mean) < 1e-9
    cli = subprocess.run([sys.executable, '-m', 'recsys_nb.cli', 'ner-ensemble', str(res.run_dir), '--data-dir', str(syn),
                          '--out', str(tmp_path/'cli.txt'), '--device', 'cpu'], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert (tmp_path/'cli.txt').read_text() == (d/'test_entities.txt').read_text()   # same models, same ensemble
