"Tests of task `cmn`: loaders (pickle refusal), masking, samplers, hop-layer gradients, a papermill run on synthetic data"
import json, math, os, importlib.util
from pathlib import Path
import numpy as np, pytest, torch
from recsys_nb.data import make_synthetic
from recsys_nb.registry import load_registry
from recsys_nb.train import Stepper
from recsys_nb.cmn import (CMN, Candidates, CMNData, Interactions, bpr_loss, epoch_batches, fit, leave_one_out,
                           load_cmn_npz, make_optimizer, segment_softmax, memory_scores, memory_read, sample_untouched,
                           save_cmn_npz, split_validation, pretrain_gmf, cmn_from_gmf, best_epoch,
                           score_fn, ranking_report, batch_loss, GMF)

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT/'nbs'/'tasks'/'cmn.ipynb'


@pytest.fixture(scope='module')
def syn(tmp_path_factory):
    return make_synthetic('cmn', tmp_path_factory.mktemp('syn'), size=80, seed=3)/'cmn.npz'


def test_seed_npz_pickle_refused_then_trusted(syn, tmp_path):
    with pytest.raises(ValueError, match='trust_pickle=True'): load_cmn_npz(syn)
    d = load_cmn_npz(syn, trust_pickle=True)
    assert d.train.shape == (80 * 19, 2) and d.test.neg.shape == (80, 100)
    # the seed's dict is user -> (positive, negatives): check one entry against the raw file
    raw = np.load(syn, allow_pickle=True)['test_data'].tolist()
    j = int(np.flatnonzero(d.test.users == 5)[0])
    assert raw[5][0] == d.test.pos[j] and list(raw[5][1]) == d.test.neg[j].tolist()
    save_cmn_npz(d, tmp_path/'ours.npz')
    with np.load(tmp_path/'ours.npz', allow_pickle=False) as z: assert 'test_data' not in z.files   # pickle-free
    d2 = load_cmn_npz(tmp_path/'ours.npz')
    assert np.array_equal(d2.train, d.train) and np.array_equal(d2.test.neg, d.test.neg)


@pytest.mark.parametrize('arrays,msg', [
    (dict(train_data=np.array([[0, 1], [2, 1]]), test_users=[0], test_pos=[1], test_neg=[[2, 3], [1, 1]]), 'disagree in length'),
    (dict(train_data=np.array([0, 1, 2]), test_users=[0], test_pos=[1], test_neg=[[2]]), 'train_data must have 2 dimension'),
    (dict(train_data=np.array([[0.5, 1]]), test_users=[0], test_pos=[1], test_neg=[[2]]), 'integer ids'),
    (dict(train_data=np.array([[0, 1]]), test_users=[0, 0], test_pos=[1, 2], test_neg=[[3], [4]]), 'appears twice'),
    (dict(train_data=np.array([[0, 1]]), test_users=[0], test_pos=[1], test_neg=[[7]], n_users=1, n_items=5), 'test_neg holds id 7 >= 5'),
])
def test_bad_npz(tmp_path, arrays, msg):
    np.savez(tmp_path/'x.npz', **arrays)
    with pytest.raises(ValueError, match=msg): load_cmn_npz(tmp_path/'x.npz')


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='no such file'): load_cmn_npz(tmp_path/'nope.npz')


def test_leave_one_out_negatives_untouched():
    import polars as pl
    rng = np.random.default_rng(0)
    r = pl.DataFrame({'user_id': rng.integers(0, 30, 2000), 'item_id': rng.integers(0, 300, 2000), 'timestamp': rng.integers(0, 10**6, 2000)})
    d = leave_one_out(r, n_neg=100, seed=1)
    touched = set(map(tuple, r.select(pl.col('user_id').rank('dense') - 1, pl.col('item_id').rank('dense') - 1).to_numpy().tolist()))
    for u, p, ns in zip(d.test.users, d.test.pos, d.test.neg):
        assert (u, p) in touched and len(set(ns)) == 100 and not any((u, n) in touched for n in ns)
    # the test positive is the user's latest rating
    last = r.with_columns(pl.col('user_id').rank('dense').cast(pl.Int64) - 1).sort('timestamp').group_by('user_id').agg(pl.col('timestamp').last())
    assert len(d.test) == last.height
    assert not np.array_equal(leave_one_out(r, seed=2).test.neg, d.test.neg)   # the seed (fold) changes the draw


def _tiny(seed=0, n_users=20, n_items=60, n=500):
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, n_users, n), rng.integers(0, n_items, n)], 1)


def test_segment_softmax_per_pair():
    x = Interactions(_tiny(), 20, 60)
    items, users = torch.arange(60), torch.zeros(60, dtype=torch.long)
    h = x.neighborhoods(items, users)
    s = torch.randn(len(h.col))
    p = segment_softmax(s, h)
    for b in range(60):
        a, e = h.offsets[b].item(), h.offsets[b + 1].item()
        if e > a: assert torch.allclose(p[a:e], s[a:e].softmax(0), atol=1e-6)
    s2 = s.clone(); s2[h.row == 3] += 1e4                  # a huge logit in one pair changes no other pair
    assert torch.equal(segment_softmax(s2, h)[h.row != 3], p[h.row != 3])


def test_neighbourhood_excludes_the_query_user():
    pairs = _tiny(1)
    x = Interactions(pairs, 20, 60)
    users = torch.as_tensor(pairs[:, 0]); items = torch.as_tensor(pairs[:, 1])      # training positives: the leak case
    h = x.neighborhoods(items, users)
    assert len(h.col) and not (h.col == users[h.row]).any()
    full = x.neighborhoods(items, users, exclude_user=False)
    assert (full.col == users[full.row]).any()                                      # without the fix the user is there
    # exactly the item's users minus the query user, and nothing else
    for b in range(0, len(users), 37):
        want = set(x.item_users[x.item_ptr[items[b]]:x.item_ptr[items[b] + 1]].tolist()) - {users[b].item()}
        assert set(h.col[h.row == b].tolist()) == want
    capped = x.neighborhoods(items, users, max_neighbors=3, item_users=x.shuffled_item_users(torch.Generator().manual_seed(0)))
    assert capped.lengths.max() <= 3 and not (capped.col == users[capped.row]).any()


def test_sampler_never_returns_a_positive():
    rng = np.random.default_rng(0)
    # dense users: user 0 has 58 of the 60 items, so most draws for it are rejected and redrawn
    pairs = np.concatenate([np.stack([np.zeros(58, int), np.arange(58)], 1),
                            np.stack([rng.integers(1, 20, 500), rng.integers(0, 60, 500)], 1)])
    x = Interactions(pairs, 20, 60)
    users = torch.as_tensor(rng.integers(0, 20, 20000))
    neg = x.sample_negatives(users, torch.Generator().manual_seed(0))
    assert not x.contains(users, neg).any()
    assert set(neg[users == 0].tolist()) == {58, 59}
    keys = set(map(tuple, pairs.tolist()))
    assert not any((u, i) in keys for u, i in zip(users.tolist()[:3000], neg.tolist()[:3000]))   # independent check
    seen = 0
    for bu, bp, bn in epoch_batches(x, neg_count=3, batch_size=100, gen=torch.Generator().manual_seed(1)):
        assert bn.shape == (len(bu), 3) and x.contains(bu, bp).all()
        assert not x.contains(bu[:, None].expand_as(bn), bn).any()
        seen += len(bu)
    assert seen == len(x)


def test_batch_size_does_not_change_scores():
    torch.manual_seed(0)
    x = Interactions(_tiny(2), 20, 60)
    m = CMN(20, 60, dim=8, hops=2)
    rng = np.random.default_rng(0)
    users, items = torch.as_tensor(rng.integers(0, 20, 200)), torch.as_tensor(rng.integers(0, 60, 200))
    with torch.no_grad():
        whole = m(users, items, x.neighborhoods(items, users))
        parts = torch.cat([m(users[s:s+7], items[s:s+7], x.neighborhoods(items[s:s+7], users[s:s+7])) for s in range(0, 200, 7)])
    assert torch.allclose(whole, parts, atol=1e-5)
    c = Candidates(np.arange(20), rng.integers(0, 60, 20), rng.integers(0, 60, (20, 30)))
    f = score_fn(m, x)
    assert ranking_report(f, c, batch_users=3) == ranking_report(f, c, batch_users=256)
    # one step on a batch = the same step whatever the order of its pairs (the loss is a mean over triples)
    bu, bp, bn = next(epoch_batches(x, 2, 64, torch.Generator().manual_seed(0)))
    grads = []
    for perm in (torch.arange(len(bu)), torch.randperm(len(bu), generator=torch.Generator().manual_seed(1))):
        m.zero_grad()
        pu, pi = torch.cat([bu[perm], bu[perm].repeat_interleave(2)]), torch.cat([bp[perm], bn[perm].reshape(-1)])
        s = m(pu, pi, x.neighborhoods(pi, pu))
        bpr_loss(s[:len(bu)], s[len(bu):].view(-1, 2)).backward()
        grads.append([p.grad.clone() for p in m.parameters()])
    for a, b in zip(*grads): assert torch.allclose(a, b, atol=1e-6)


def test_hop_layers_train():
    torch.manual_seed(0)
    m = CMN(10, 12, dim=8, hops=3)
    params = dict(m.named_parameters())
    assert {'hop_maps.0.weight', 'hop_maps.0.bias', 'hop_maps.1.weight'} <= set(params)
    assert set(map(id, m.l2_weights())) == {id(params[k]) for k in ('hop_maps.0.weight', 'hop_maps.1.weight', 'dense.weight', 'out.weight')}
    x = Interactions(np.stack([np.arange(10).repeat(3), np.random.default_rng(0).integers(0, 12, 30)], 1), 10, 12)
    before = {k: v.detach().clone() for k, v in params.items()}
    u, p, n = next(epoch_batches(x, 2, 16, torch.Generator().manual_seed(0)))
    pu, pi = torch.cat([u, u.repeat_interleave(2)]), torch.cat([p, n.reshape(-1)])
    h = x.neighborhoods(pi, pu)
    s = m(pu, pi, h); bpr_loss(s[:len(u)], s[len(u):].view(-1, 2)).backward()
    for k in ('hop_maps.0.weight', 'hop_maps.1.weight', 'hop_maps.1.bias', 'user_output.weight'):
        assert params[k].grad is not None and params[k].grad.abs().sum() > 0, k
    # numeric gradient check of one hop-map weight and one memory entry in float64 (the fused sparse backward)
    m64 = m.double()
    f = lambda: (lambda s: bpr_loss(s[:len(u)], s[len(u):].view(-1, 2)))(m64(pu, pi, h))
    for w, ix in ((m64.hop_maps[0].weight, (1, 2)), (m64.user_memory.weight, (int(h.col[0]), 3)), (m64.user_output.weight, (int(h.col[0]), 1))):
        m64.zero_grad(); f().backward(); g = w.grad[ix].item()
        with torch.no_grad():
            w[ix] += 1e-6; up = f().item(); w[ix] -= 2e-6; down = f().item(); w[ix] += 1e-6
        assert math.isclose(g, (up - down) / 2e-6, rel_tol=1e-4, abs_tol=1e-9)
    m.float(); opt = make_optimizer(m, lr=1e-2)
    st = Stepper(m, opt, max_grad_norm=5.0, precision='fp32')
    with st.autocast(): st.backward(batch_loss(m, u, p, n, x, l2=0.1))
    assert not torch.equal(before['hop_maps.0.weight'], m.hop_maps[0].weight)


def test_early_stopping_restores_best(syn):
    d = load_cmn_npz(syn, trust_pickle=True)
    tr, val = split_validation(d, 0, 2, 40, seed=0)
    x = Interactions(tr.train, d.n_users, d.n_items)
    gmf, _ = pretrain_gmf(x, dim=8, epochs=2, batch_size=128, verbose=False)
    torch.manual_seed(0); m = cmn_from_gmf(gmf)
    h = fit(m, x, make_optimizer(m, lr=0.05), epochs=6, neg_count=2, batch_size=64, max_neighbors=10, val=val, patience=1,
            verbose=False)
    b = int(np.argmax([r['val_hr@10'] for r in h]))
    assert len(h) == min(b + 2, 6) and best_epoch(h) == b
    assert ranking_report(score_fn(m, x, 10), val)['hr@10'] == pytest.approx(h[b]['val_hr@10'])


def test_gmf_term_starts_at_gmf(syn):
    d = load_cmn_npz(syn, trust_pickle=True)
    x = Interactions(d.train, d.n_users, d.n_items)
    gmf, _ = pretrain_gmf(x, dim=8, epochs=1, batch_size=128, verbose=False)
    c = cmn_from_gmf(gmf, gmf_term=True, output_memory='gmf')
    users, items = torch.as_tensor(d.test.users).repeat(5), torch.as_tensor(d.test.neg[:, :5].T.reshape(-1))
    assert torch.allclose(score_fn(c, x)(users, items), score_fn(gmf)(users, items), atol=1e-5)
    assert torch.allclose(c.user_output.weight, gmf.user.weight * 0.5)
    with pytest.raises(ValueError, match="output_memory must be"): cmn_from_gmf(gmf, output_memory='x')


def test_fold_changes_validation(syn):
    d = load_cmn_npz(syn, trust_pickle=True)
    a = split_validation(d, 0, 4, 100, seed=0)[1]; b = split_validation(d, 1, 4, 100, seed=0)[1]
    assert len(a) == 20 and not set(a.users) & set(b.users)
    assert split_validation(d, 0, 4, 100, seed=0)[1].neg.tolist() == a.neg.tolist()   # reproducible


def _papermill(out, **params):
    import papermill as pm
    base = dict(data_dir=str(params.pop('data_dir')), npz_file='cmn.npz', trust_pickle=True, out_dir=str(out), device='cpu',
                **load_registry()['cmn']['tiny'])   # the test preset of nbs/tasks/tasks.yaml
    base.update(params)
    out.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(NB), str(out/'cmn.ipynb'), parameters=base, kernel_name='python3', progress_bar=False, cwd=str(ROOT))
    return json.loads((out/'metrics.json').read_text())


def test_pipeline_notebook_on_synthetic(syn, tmp_path):
    out = tmp_path/'run'
    m = _papermill(out, data_dir=syn.parent)
    assert set(m['models']) == {'cmn', 'gmf', 'itemknn', 'popularity'}
    for r in m['models'].values():
        assert all(0 <= r[f'hr@{k}'] <= 1 for k in range(1, 11))
        assert all(r[f'hr@{k}'] <= r[f'hr@{k+1}'] for k in range(1, 10))
    assert m['models']['popularity']['hr@10'] != m['models']['cmn']['hr@10'] or m['models']['popularity']['ndcg@10'] != m['models']['cmn']['ndcg@10']
    assert m['n_test_users'] == 80 and m['device'] == 'cpu' and len(m['history']) == 1
    log = (out/'cmn.log').read_text().splitlines()
    assert log[0] == 'metric,1,2,3,4,5,6,7,8,9,10' and log[1].startswith('ndcg,') and log[2].startswith('hr,')
    assert float(log[2].split(',')[10]) == pytest.approx(m['models']['cmn']['hr@10'])
    for f in ('cmn_history.png', 'metric_at_k.png', 'gmf.safetensors', 'checkpoints/cmn/model.safetensors'):
        assert (out/f).stat().st_size > 0, f
    # resume: a second call with epochs=2 trains only epoch 2 and keeps epoch 1's history
    m2 = _papermill(out, data_dir=syn.parent, epochs=2, resume=True)
    nobest = lambda h: {k: v for k, v in h.items() if k != 'best'}   # which epoch is best changes with epoch 2
    assert [h['epoch'] for h in m2['history']] == [0, 1] and nobest(m2['history'][0]) == nobest(m['history'][0])
    assert json.loads((out/'checkpoints'/'cmn'/'state.json').read_text())['epoch'] == 1


def test_pipeline_refuses_pickle_without_flag(syn, tmp_path):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError, match='trust_pickle'):
        _papermill(tmp_path/'r', data_dir=syn.parent, trust_pickle=False)


@pytest.mark.skipif(importlib.util.find_spec('recsys_nb.runner') is None, reason='runner not merged yet')
def test_runner(syn, tmp_path):
    from recsys_nb.runner import run_task
    res = run_task('cmn', folds=[0], params=dict(data_dir=str(syn.parent), npz_file='cmn.npz', trust_pickle=True, pretrain_epochs=1,
                                                 epochs=1, embed_size=8, max_neighbors=8, val_users=10, show_progress=False, num_threads=1), out=str(tmp_path/'x'))
    assert 'cmn' in res.metrics[0]['models']


def test_make_optimizer_choice(syn):
    d = load_cmn_npz(syn, trust_pickle=True)
    c = cmn_from_gmf(GMF(d.n_users, d.n_items, 8))
    assert isinstance(make_optimizer(c, 1e-3), torch.optim.RMSprop)            # the seed's
    assert isinstance(make_optimizer(c, 1e-3, optimizer='adam'), torch.optim.Adam)
    assert isinstance(make_optimizer(GMF(d.n_users, d.n_items, 8), 1e-3), torch.optim.Adam)
    sgd = make_optimizer(GMF(d.n_users, d.n_items, 8), 0.02, optimizer='sgd', batch_size=64)   # lr per example
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]['lr'] == pytest.approx(0.02 * 64)
    with pytest.raises(ValueError, match="optimizer must be 'rmsprop', 'adam' or 'sgd'"): make_optimizer(c, optimizer='adagrad')


def test_pipeline_sgd_gmf(syn, tmp_path):
    "The pipeline with Rendle et al.'s GMF (per-example SGD, every example weighs the same, L2 per example, last epoch kept)"
    m = _papermill(tmp_path/'sgd', data_dir=syn.parent, pretrain_optimizer='sgd', pretrain_loss='example', pretrain_l2=0.0,
                   pretrain_example_l2=0.005, pretrain_init_std=0.1, pretrain_lr=0.02, pretrain_neg=8, pretrain_epochs=3,
                   pretrain_patience=0, pretrain_keep_best=False)
    gh = m['gmf_history']
    assert [h['best'] for h in gh] == [False, False, True]              # the last epoch is kept, whatever validation says
    assert m['models']['gmf']['hr@10'] != m['models']['popularity']['hr@10']
