"""generation.generate: batched greedy decoding, stop handling, order, determinism."""
import pytest
import torch

from contrastive_context import generation
from contrastive_context import models


class ScriptCache:
    """Stand-in KV cache: the step and each row's script; can drop rows like transformers' caches."""

    def __init__(self, step, texts, prunable):
        self.step, self.texts = step, texts
        if prunable:
            self.batch_select_indices = self._select

    def _select(self, indices):
        self.texts = [self.texts[int(i)] for i in indices]


class ScriptedLM(torch.nn.Module):
    """A fake causal LM: row i emits the characters of SCRIPT[last prompt char] one per step, then EOS.

    It follows the KV-cache protocol of generation.py (the prompt once, then one token a step,
    past_key_values carried along) and counts its forward calls and rows, so early exit and the
    dropping of finished rows are visible."""

    def __init__(self, tok, scripts, prunable=True):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.tok, self.scripts, self.prunable = tok, scripts, prunable
        self.calls, self.rows = 0, []
        self.generation_config = None

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=True):
        self.calls += 1
        B, V = input_ids.shape[0], len(self.tok)
        self.rows.append(B)
        assert attention_mask.shape[0] == B and position_ids.shape[0] == B
        if past_key_values is None:  # prompt pass: remember each row's script
            keys = [self.tok.decode([int(input_ids[i, -1])]) for i in range(B)]
            past_key_values = ScriptCache(0, [self.scripts[k] for k in keys], self.prunable)
        assert len(past_key_values.texts) == B
        step = past_key_values.step
        logits = torch.zeros(B, input_ids.shape[1], V)
        for i, text in enumerate(past_key_values.texts):
            if step < len(text):
                tid = self.tok(text[step], add_special_tokens=False)["input_ids"][0]
            else:
                tid = self.tok.eos_token_id
            logits[i, -1, tid] = 1.0
        past_key_values.step += 1
        return type("Out", (), {"logits": logits, "past_key_values": past_key_values})()


@pytest.fixture(scope="module")
def tok():
    return models.tiny_tokenizer()


@pytest.mark.parametrize("prunable", [True, False])
def test_stop_per_sequence_order_and_early_exit(tok, prunable):
    scripts = {"a": " alpha\nrest", "b": " be\n", "c": " gamma ray  \n\nxx", "d": "dd"}  # d ends with EOS
    model = ScriptedLM(tok, scripts, prunable)
    prompts = ["q: a", "longer prompt b", "c", "the longest prompt of all: d", "a"]
    out = generation.generate(model, tok, prompts, max_new_tokens=50, batch_size=8, progress=False)
    assert out == ["alpha", "be", "gamma ray", "dd", "alpha"]
    # longest text before its stop is " gamma ray  \n" = 13 tokens: exit right after, not at 50
    assert model.calls == 13
    if prunable:  # finished rows leave the batch: b after 4 tokens, d after 3 (+ EOS), a after 7
        assert model.rows[0] == 5 and model.rows[-1] == 1 and model.rows == sorted(model.rows, reverse=True)
    else:
        assert set(model.rows) == {5}


def test_max_new_tokens_cuts_and_batches(tok):
    scripts = {"a": " abcdefgh\n", "b": " xy\n"}
    model = ScriptedLM(tok, scripts)
    prompts = ["a", "b", "a", "b", "b"]
    out = generation.generate(model, tok, prompts, max_new_tokens=4, batch_size=2, progress=False)
    assert out == ["abc", "xy", "abc", "xy", "xy"]


def test_multi_char_stop(tok):
    model = ScriptedLM(tok, {"a": " SELECT 1;; junk", "b": " x;;"})
    assert generation.generate(model, tok, ["a", "b"], 30, stop=";;", progress=False) == ["SELECT 1", "x"]


def test_empty_prompts(tok):
    assert generation.generate(ScriptedLM(tok, {}), tok, [], 5, progress=False) == []
    with pytest.raises(ValueError):
        generation.generate(ScriptedLM(tok, {}), tok, ["a"], 0, progress=False)


@pytest.fixture(scope="module")
def tiny():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only add overhead (and contention on shared CPUs)
    yield models.load("tiny", device="cpu")
    torch.set_num_threads(n)


@pytest.mark.parametrize("stop", ["\n", "\x1a", "k"])  # (characters the random tiny model emits now and then)
def test_tiny_batched_matches_unbatched_and_hf_generate(tiny, stop):
    model, tok = tiny
    prompts = ["ACB: rijjpr\nBCA:", "A", "Source: A man is running.\nTarget:", "XY: ab\nYX: ba\nXX:", "hello there",
               "q", "1 2 3 4", "ABC: de\nCBA: ed\nBAC:"]
    batched = generation.generate(model, tok, prompts, 12, stop=stop, batch_size=4, progress=False)
    single = generation.generate(model, tok, prompts, 12, stop=stop, batch_size=1, progress=False)
    again = generation.generate(model, tok, prompts, 12, stop=stop, batch_size=4, progress=False)
    assert batched == single == again
    for p, o in zip(prompts, batched):  # the loop reproduces transformers' own greedy search
        enc = tok(p, return_tensors="pt", return_token_type_ids=False)
        with torch.no_grad():
            g = model.generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
        ref = tok.decode(g[0][enc["input_ids"].shape[1]:], skip_special_tokens=True).split(stop)[0].strip()
        assert ref == o


def test_return_stats_and_train_mode_restored(tiny):
    model, tok = tiny
    model.train()
    out, stats = generation.generate(model, tok, ["a", "bb"], 5, progress=False, return_stats=True)
    assert len(out) == 2 and 0 < stats["new_tokens"] <= 10
    assert model.training
    model.eval()


# ----------------------------------------------------------------------------- sampling
SAMPLE_PROMPTS = ["ACB: rijjpr\nBCA:", "A", "Source: A man is running.\nTarget:", "hello there", "1 2 3 4"]


def test_sampling_seeded_and_batch_size_independent(tiny):
    model, tok = tiny
    kw = dict(stop=None, progress=False, temperature=1.0, top_p=0.9, num_samples=3)
    a = generation.generate(model, tok, SAMPLE_PROMPTS, 10, batch_size=4, seed=7, **kw)
    b = generation.generate(model, tok, SAMPLE_PROMPTS, 10, batch_size=1, seed=7, **kw)
    c = generation.generate(model, tok, SAMPLE_PROMPTS, 10, batch_size=4, seed=8, **kw)
    assert len(a) == len(SAMPLE_PROMPTS) and all(len(cands) == 3 for cands in a)
    assert a == b  # each candidate has its own generator: batching does not change the draws
    assert a != c  # another seed, other draws
    assert sum(len(set(cands)) > 1 for cands in a) >= 3  # the samples of a prompt differ
    # per-prompt seeds: a prompt's candidates do not depend on the other prompts of the call
    one = generation.generate(model, tok, SAMPLE_PROMPTS[2:3], 10, batch_size=4, seed=["s2"], **kw)
    many = generation.generate(model, tok, SAMPLE_PROMPTS, 10, batch_size=4, seed=[f"s{i}" for i in range(5)], **kw)
    assert one[0] == many[2]


def test_sampling_tiny_top_p_is_greedy(tiny):
    """top_p so small that only the most likely token survives: sampling = greedy decoding."""
    model, tok = tiny
    greedy = generation.generate(model, tok, SAMPLE_PROMPTS, 8, stop=None, batch_size=2, progress=False)
    sampled = generation.generate(model, tok, SAMPLE_PROMPTS, 8, stop=None, batch_size=2, progress=False,
                                  temperature=1.0, top_p=1e-6, num_samples=2, seed=3)
    assert sampled == [[g, g] for g in greedy]


def test_sampling_argument_errors(tiny):
    model, tok = tiny
    with pytest.raises(ValueError):
        generation.generate(model, tok, ["a"], 3, num_samples=2, progress=False)  # several need sampling
    with pytest.raises(ValueError):
        generation.generate(model, tok, ["a"], 3, temperature=1.0, top_p=0.0, progress=False)
    with pytest.raises(ValueError):
        generation.generate(model, tok, ["a", "b"], 3, temperature=1.0, seed=["only-one"], progress=False)


def test_generate_runs_without_autograd(tiny):
    """The KV cache must not carry autograd graphs (they kept every step's activations alive:
    memory grew with each generated token)."""
    model, tok = tiny
    seen = []
    orig = model.forward

    def spy(*a, **kw):
        seen.append(torch.is_grad_enabled())
        return orig(*a, **kw)
    model.forward = spy
    try:
        assert any(p.requires_grad for p in model.parameters())
        generation.generate(model, tok, ["ab: cd\nef:", "x:"], 5, stop=None, progress=False)
    finally:
        del model.forward
    assert seen and not any(seen)


def test_on_batch_reports_every_batch():
    """evaluate.py's bar moves per batch (evaluation.predict passes its bar's update
    as on_batch), not once per progress chunk of 8 batches; answers do not depend on the callback."""
    model, tok = models.load("tiny", device="cpu")
    prompts = [f"ABC{i}:" for i in range(5)]
    seen = []
    out = generation.generate(model, tok, prompts, 3, batch_size=2, progress=False, on_batch=seen.append)
    assert seen == [2, 2, 1]
    assert out == generation.generate(model, tok, prompts, 3, batch_size=2, progress=False)
