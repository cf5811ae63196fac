"""The from-scratch ensemble decoder (synthetic/scratch.py): it learns, its models are independent, and
cached greedy decoding equals decoding by full recomputation."""
import numpy as np
import pytest
import torch

from contrastive_context.synthetic import scratch
from contrastive_context.synthetic import data as synthetic
from contrastive_context import tasks


@pytest.fixture(scope="module")
def data():
    task = tasks.AlignmentTask(seed=2, n_train=3000, n_test=40, n_rule_sets=4)
    return synthetic.AlignmentData(task)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def batches(data, seed, steps, n=32):
    rng = np.random.default_rng(seed)
    probs = synthetic.regime_probs("random")
    return [torch.from_numpy(data.train_batch(rng, n, probs)) for _ in range(steps)]


def test_loss_falls_well_below_its_start(data):
    torch.manual_seed(0)
    model = scratch.Ensemble([0, 1], layers=1, width=32, heads=2, max_len=data.seq_len)
    opt = scratch.make_optimizer(model, 3e-3)
    stream = [np.random.default_rng(s) for s in (0, 1)]
    probs = synthetic.regime_probs("random")
    losses = []
    for step in range(150):
        b = torch.from_numpy(np.stack([data.train_batch(r, 32, probs) for r in stream]))
        losses.append(scratch.train_step(model, opt, b, data.n_target, scratch.lr_at(step, 3e-3, 20)))
    start, end = losses[0], torch.stack(losses[-10:]).mean(0)
    assert (start > 3.5).all()                     # ~ln(54): nothing known at the start
    assert (end < 0.6 * start).all(), (start, end)  # both models learn, not just move
    # and what they learned is the task: acceptance under random contexts far above chance (~1 %)
    sets = data.eval_sets(0, n_test=40)
    pred = model.generate(torch.from_numpy(sets["random"]["prompt"]), data.n_target,
                          allowed=(scratch.LET0, scratch.LET0 + 26)).numpy() - scratch.LET0
    acc = 100 * data.chunk_ok(sets["random"], pred).mean((-1, -2))
    assert (acc > 10).all(), acc                     # an untrained model: ~1-3 %


def test_ensemble_members_are_independent(data):
    """Model 1 of an ensemble of 2 trains exactly like the same model alone (same seed, same data)."""
    b0, b1 = batches(data, 10, 5), batches(data, 11, 5)
    pair = scratch.Ensemble([5, 6], layers=1, width=32, heads=2, max_len=data.seq_len)
    alone = scratch.Ensemble([6], layers=1, width=32, heads=2, max_len=data.seq_len)
    for n, p in pair.params.items():
        assert torch.equal(p[1], alone.params[n][0])      # init depends on the model's own seed only
    o2, o1 = scratch.make_optimizer(pair, 1e-3), scratch.make_optimizer(alone, 1e-3)
    for x0, x1 in zip(b0, b1):
        l2 = scratch.train_step(pair, o2, torch.stack([x0, x1]), data.n_target, 1e-3)
        l1 = scratch.train_step(alone, o1, x1[None], data.n_target, 1e-3)
        assert l2[1].item() == pytest.approx(l1[0].item(), rel=1e-4, abs=1e-5)
    for n, p in pair.params.items():
        assert torch.allclose(p[1], alone.params[n][0], atol=1e-5), n


def test_cached_greedy_decoding_equals_full_recompute(data):
    model = scratch.Ensemble([3, 4], layers=2, width=32, heads=4, max_len=data.seq_len)
    for p in model.parameters():                    # not at init: make the predictions diverse
        p.data += 0.3 * torch.randn_like(p)
    prompts = torch.from_numpy(data.eval_sets(0, n_test=12)["random"]["prompt"])
    got = model.generate(prompts, data.n_target, chunk=5)
    seq = prompts[None].expand(2, -1, -1)
    with torch.no_grad():
        for _ in range(data.n_target):
            nxt = model(seq)[:, :, -1].argmax(-1)
            seq = torch.cat([seq, nxt[..., None]], -1)
    assert torch.equal(got, seq[..., prompts.shape[1]:])


def test_loss_is_on_the_label_only(data):
    """Changing the context tokens changes the loss; the loss reads only the last m*l targets."""
    model = scratch.Ensemble([0], layers=1, width=16, heads=2, max_len=data.seq_len)
    b = batches(data, 0, 1, n=4)[0][None]
    logits = model(b[..., :-1])
    tgt = b[..., -data.n_target:]
    manual = torch.nn.functional.cross_entropy(logits[0, :, -data.n_target:].reshape(-1, scratch.VOCAB),
                                               tgt[0].reshape(-1))
    assert model.loss(b, data.n_target)[0].item() == pytest.approx(manual.item(), rel=1e-5)


def test_build_scratch_hf_model():
    """models.build_scratch: an HF decoder of the requested size with the byte tokenizer, seeded."""
    from contrastive_context import models
    a, tok = models.build_scratch(layers=1, width=32, heads=2, seed=3)
    b, _ = models.build_scratch(layers=1, width=32, heads=2, seed=3)
    assert a.config.num_hidden_layers == 1 and a.config.hidden_size == 32 and len(tok) == a.config.vocab_size
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert all(p.requires_grad for p in a.parameters())
    with pytest.raises(models.UserError):
        models.build_scratch(layers=1, width=30, heads=4)


def test_last_block_shortcut_matches_full_forward(data):
    model = scratch.Ensemble([7, 8], layers=2, width=32, heads=2, max_len=data.seq_len)
    b = torch.stack([batches(data, 3, 1, n=6)[0], batches(data, 4, 1, n=6)[0]])
    pos = torch.arange(data.seq_len - 1 - data.n_target, data.seq_len - 1)
    with torch.no_grad():
        full = model(b[..., :-1])[:, :, pos]
        short = model(b[..., :-1], positions=pos)
    assert torch.allclose(full, short, atol=1e-5)
