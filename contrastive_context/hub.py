"""Hub loaders of the mt task (`--data hub:<name>`): which corpus and split feeds the pool and each test
split (`hub_plan`, Appendix C.2, Table 2) and the `datasets` calls that load them. Local parallel files are
read by tasks.load_parallel.
"""
import os

from .common import UserError


# Hub data sets (Appendix C.2, Table 2), with the splits their data cards list. OPUS corpora
# (europarl, emea, tanzil) and samanantar have ONLY a train split; flores_plus has only dev and
# devtest (one config per language, aligned by row); iitb has train/validation/test.
HUB_SOURCES = {
    "europarl": {"repo": "Helsinki-NLP/europarl", "config": "{a}-{b}", "splits": ("train",)},
    "samanantar": {"repo": "ai4bharat/samanantar", "config": "{other}", "splits": ("train",)},
    "flores_plus": {"repo": "openlanguagedata/flores_plus", "config": "{code}", "splits": ("dev", "devtest")},
    "emea": {"repo": "Helsinki-NLP/emea", "config": "{a}-{b}", "splits": ("train",)},
    "tanzil": {"repo": "Helsinki-NLP/tanzil", "config": "{a}-{b}", "splits": ("train",)},
    "iitb": {"repo": "cfilt/iitb-english-hindi", "config": None, "splits": ("train", "validation", "test")},
}
FLORES_CODES = {"en": "eng_Latn", "de": "deu_Latn", "hi": "hin_Deva", "ta": "tam_Taml", "lt": "lit_Latn",
                "fr": "fra_Latn", "es": "spa_Latn", "cs": "ces_Latn", "th": "tha_Thai", "it": "ita_Latn"}
# the paper's set-up per non-English language: training corpus and OOD test set (Table 2)
PAPER_MT = {"de": ("europarl", "emea"), "lt": ("europarl", "emea"), "hi": ("samanantar", "iitb"),
            "ta": ("samanantar", "tanzil")}
HUB_TRAIN_ROWS = 50_000   # Table 2: 50,000 training pairs
HUB_OOD_ROWS = 500        # Table 2: 500 OOD test pairs


def hub_plan(name, src, tgt):
    """Which (data set, split) feeds the pool and each test split of `--data hub:<name>`:
    {"pool": (name, split), "tests": {test name: (name, split)}}. Splits use the `datasets`
    slice syntax, so every slice is deterministic and disjoint from the pool when taken from the
    same corpus. `hub:paper` = the paper's set-up for the language pair (Table 2).

      paper / europarl / samanantar   pool = <corpus> train[:50000]; test = Flores+ devtest;
                                      ood = the paper's OOD set for the pair (if it has one)
      emea / tanzil (train only)      pool = train[500:50500]; test = Flores+ devtest;
                                      ood = train[:500] (held out)
      flores_plus                     pool = dev; test = devtest
      iitb                            pool = train[:50000]; test = Flores+ devtest; ood = test[:500]
    """
    other = tgt if src == "en" else src
    if name == "paper":
        if "en" not in (src, tgt) or other not in PAPER_MT:
            raise UserError(f"hub:paper covers en-{{{','.join(PAPER_MT)}}}, not {src}-{tgt}")
        name = PAPER_MT[other][0]
    if name not in HUB_SOURCES:
        raise UserError(f"unknown hub data set '{name}' (known: paper, {', '.join(HUB_SOURCES)})")
    flores = ("flores_plus", "devtest")
    ood_name = PAPER_MT.get(other, (None, None))[1] if "en" in (src, tgt) else None

    def ood_of(n):
        if n == "iitb":
            return ("iitb", f"test[:{HUB_OOD_ROWS}]")
        return (n, f"train[:{HUB_OOD_ROWS}]")
    if name == "flores_plus":
        return {"pool": ("flores_plus", "dev"), "tests": {"test": flores}}
    if name in ("emea", "tanzil"):
        return {"pool": (name, f"train[{HUB_OOD_ROWS}:{HUB_OOD_ROWS + HUB_TRAIN_ROWS}]"),
                "tests": {"test": flores, "ood": ood_of(name)}}
    if name == "iitb":
        return {"pool": ("iitb", f"train[:{HUB_TRAIN_ROWS}]"), "tests": {"test": flores, "ood": ood_of("iitb")}}
    tests = {"test": flores}
    if ood_name is not None and ood_name != name:
        tests["ood"] = ood_of(ood_name)
    return {"pool": (name, f"train[:{HUB_TRAIN_ROWS}]"), "tests": tests}


def require_datasets(name):
    """The `datasets` module, or a UserError when the network is off (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)
    or the package is missing."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise UserError(f"hub data set '{name}' needs the network (HF_HUB_OFFLINE=1 is set); "
                        f"use local files with --data DIR")
    try:
        import datasets
    except ImportError:
        raise UserError(f"hub data set '{name}' needs `pip install datasets` and network access") from None
    return datasets


def load_hub(name, src, tgt, split, datasets=None):
    """[{"id", "x", "y"}] of one split (slice syntax allowed) of a hub data set. Only splits its
    data card lists are asked for; ids are "<name>.<split>-<row>"."""
    datasets = datasets or require_datasets(name)
    info = HUB_SOURCES[name]
    base = split.split("[")[0]
    if base not in info["splits"]:
        raise UserError(f"hub data set {name} has no split '{base}' (it has: {', '.join(info['splits'])})")
    a, b = sorted((src, tgt))
    other = tgt if src == "en" else src
    repo = info["repo"]
    try:
        if name == "flores_plus":
            for lang in (src, tgt):
                if lang not in FLORES_CODES:
                    raise UserError(f"flores_plus: no language code known for '{lang}'")
            xs = [r["text"] for r in datasets.load_dataset(repo, FLORES_CODES[src], split=split)]
            ys = [r["text"] for r in datasets.load_dataset(repo, FLORES_CODES[tgt], split=split)]
            if len(xs) != len(ys):
                raise UserError(f"flores_plus {split}: {len(xs)} {src} rows but {len(ys)} {tgt} rows")
            pairs = list(zip(xs, ys))
        else:
            if name == "samanantar" and "en" not in (src, tgt):
                raise UserError("samanantar pairs English with an Indic language")
            cfg = info["config"].format(a=a, b=b, other=other) if info["config"] else None
            ds = datasets.load_dataset(repo, cfg, split=split) if cfg else datasets.load_dataset(repo, split=split)
            pairs = []
            for r in ds:
                if "translation" in r:
                    pairs.append((r["translation"][src], r["translation"][tgt]))
                elif name == "samanantar":  # columns src (English) and tgt (the Indic language)
                    pairs.append((r["src"], r["tgt"]) if src == "en" else (r["tgt"], r["src"]))
                else:
                    pairs.append((r[src], r[tgt]))
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"could not load hub data set {repo} ({split}): {type(e).__name__}: "
                        f"{' '.join(str(e).split())[:200]}") from None
    tag = split.replace("[", "").replace("]", "").replace(":", "_")
    return [{"id": f"{name}.{tag}-{i}", "x": x.strip(), "y": y.strip()} for i, (x, y) in enumerate(pairs)
            if isinstance(x, str) and isinstance(y, str) and x.strip() and y.strip()]


def load_hub_task_data(name, src, tgt, datasets=None):
    """(pool, {test name: examples}) for `--data hub:<name>` following `hub_plan`."""
    plan = hub_plan(name, src, tgt)
    datasets = datasets or require_datasets(name)
    pool = load_hub(*plan["pool"][:1], src, tgt, plan["pool"][1], datasets=datasets)
    tests = {t: load_hub(n, src, tgt, sp, datasets=datasets) for t, (n, sp) in plan["tests"].items()}
    return pool, tests
