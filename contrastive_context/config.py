"""Every configuration is declared ONCE, here, as a dataclass with per-field help.

From these dataclasses come the command-line flags of every script (`add_args`), the saved
`config.json` of a run (`dataclasses.asdict`), the resume check (`semantic_diff`), and the
flags reproduce.py passes to its stages (`to_argv`). A field named `top_m` is the flag
`--top-m`; its metadata may give `help`, `choices`, numeric bounds (`lo`, `hi`, open or
closed) and `flag` (a different flag name).

    TaskConfig      which task and data (tasks.load_task)
    ContextConfig   how training contexts are chosen (contexts.sample_rows)
    TrainConfig     model, LoRA / full training and optimisation (train.py)
"""
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Optional

from .common import SEED_MAX, UserError, finite_float, int_range

from .regimes import REGIMES  # noqa: E402  (the regimes are defined in regimes.py)

TASKS = ("alignment", "mt", "semparse", "sql")


def opt(default, help, **meta):
    """A dataclass field with its help text and validation metadata."""
    return field(default=default, metadata=dict(help=help, **meta))


# ------------------------------------------------------------------------------------- types
def number(kind, lo=None, hi=None, lo_open=False, hi_open=False):
    """An argparse `type=` for finite numbers in a range (common.finite_float / common.int_range):
    "nan", "inf", "1e12" for an integer... are refused with one error line."""
    if kind is int:
        return int_range(lo, hi)
    return finite_float(lo, hi, lo_open, hi_open)


SEED = dict(lo=0, hi=SEED_MAX)


# ------------------------------------------------------------------------------------- configs
@dataclass
class TaskConfig:
    task: str = opt("alignment", "the task", choices=TASKS)
    data: Optional[str] = opt(None, "data folder (mt: DIR/{split}.{src,tgt}, .tsv or .jsonl, or hub:<name>; "
                              "semparse: XSemPLR MTOP folder; sql: BIRD folder)")
    src: str = opt("en", "mt: source language code")
    tgt: str = opt("de", "mt: target language code")
    metric: str = opt("chrf", "mt: sentence metric", choices=("chrf", "bleu"))
    lang: str = opt("en", "semparse: language of the utterances")
    test_size: Optional[int] = opt(None, "semparse: keep the first N test items for testing and add the rest "
                                   "to the training pool after dev (MTOP ships no train split here: dev alone "
                                   "is 859 examples)", lo=1)
    max_pool: Optional[int] = opt(None, "use only the first N pool examples", lo=1)
    sql_schema: str = opt("full", "sql: schema in the prompt: every table, or only the tables named in the "
                          "gold SQL (an oracle stand-in for the paper's schema filter)", choices=("full", "used"))
    task_seed: int = opt(0, "alignment: seed of the automata (PFAs), the alignment pi and the data", **SEED)
    align_m: int = opt(3, "alignment: input symbols per instance", lo=2, hi=25)
    align_len: int = opt(2, "alignment: output letters per symbol", lo=1, hi=64)
    n_train: int = opt(200, "alignment: pool size (training instances)", lo=2, hi=10_000_000)
    n_test: int = opt(300, "alignment: test instances", lo=1, hi=10_000_000)


# which TaskConfig fields each task takes, and under which constructor name
TASK_OPTIONS = {
    "alignment": {"task_seed": "seed", "align_m": "m", "align_len": "length", "n_train": "n_train",
                  "n_test": "n_test", "max_pool": "max_pool"},
    "mt": {"data": "data", "src": "src", "tgt": "tgt", "max_pool": "max_pool", "metric": "metric"},
    "semparse": {"data": "data", "lang": "lang", "max_pool": "max_pool", "test_size": "test_size"},
    "sql": {"data": "data", "max_pool": "max_pool", "sql_schema": "sql_schema"},
}


@dataclass
class ContextConfig:
    regime: str = opt("contrastive", "how training contexts are chosen", choices=REGIMES)
    k: int = opt(4, "examples per context", lo=1, hi=512)
    alpha: float = opt(0.3, "contrastive: share of Random-Contexts (random+similar: share of Random, the rest "
                       "Similar)", lo=0, hi=1)
    beta: float = opt(0.2, "contrastive: share of Similar-Contexts", lo=0, hi=1)
    rho: float = opt(0.5, "contrastive: within One-Near-Contexts that are not exact copies, probability that "
                     "the near example is a synthetic paraphrase of the target (from --paraphrases)", lo=0, hi=1)
    repeat: float = opt(0.0, "contrastive: within One-Near-Contexts, probability that the near example is an "
                        "exact copy of the target (x, y) (repetition, Bratulic et al. 2025)", lo=0, hi=1)
    zero_frac: float = opt(0.0, "extension: share of targets with no context at all, taken out of the Random "
                           "share (random, contrastive, random+similar; default 0 = the paper's method)", lo=0, hi=1)
    counterfactual: float = opt(0.0, "extension (gamma): within One-Near-Contexts whose near example is neither a "
                                "copy nor a paraphrase, probability that it is a counterfactual near-duplicate of "
                                "the target with its own label (counterfactual.py); 0 = the paper", lo=0, hi=1)
    targets: Optional[int] = opt(None, "train on the first N pool examples only; their contexts still come from "
                                 "the whole pool (a context pool larger than the training targets)", lo=1)
    top_m: int = opt(50, "One-Near candidates: the top-M BM25 neighbours (capped at the pool size)", lo=1)
    min_avg_sim: Optional[float] = opt(None, "similar: keep only targets whose mean nsim to their context "
                                       "exceeds this (paper App. C.1)", lo=0, hi=1)
    paraphrases: Optional[str] = opt(None, "paraphrase JSONL (paraphrase.py) for --rho")


# A from-scratch decoder needs more, larger steps than LoRA on a pretrained model (TrainConfig)
SCRATCH_DEFAULTS = {"epochs": 20, "batch_size": 8}
PRETRAINED_DEFAULTS = {"epochs": 2, "batch_size": 2}


@dataclass
class TrainConfig:
    model: str = opt("scratch", "scratch[:LAYERSxWIDTHxHEADS] (a new random decoder, trained with --full; the "
                     "default, so that the headline run visibly learns on a laptop CPU) | smollm2-135m | "
                     "gemma3-270m | tiny | a local HF folder or .gguf file")
    full: bool = opt(False, "train all weights instead of a LoRA adapter (implied by --model scratch)")
    epochs: Optional[int] = opt(None, "passes over the pool; contexts are re-drawn for every epoch (default: 2; "
                                f"{SCRATCH_DEFAULTS['epochs']} for --model scratch)", lo=1, hi=100_000)
    max_steps: Optional[int] = opt(None, "optimizer steps (overrides --epochs)", lo=1, hi=10_000_000)
    batch_size: Optional[int] = opt(None, "sequences per device and micro-batch (default: 2; "
                                    f"{SCRATCH_DEFAULTS['batch_size']} for --model scratch)", lo=1, hi=4096)
    grad_accum: int = opt(1, "micro-batches per optimizer step", lo=1, hi=4096)
    lr: Optional[float] = opt(None, "peak learning rate (default: 2e-4, the paper's, for LoRA on a pretrained "
                              "model; 1e-3 for --full)", lo=0, lo_open=True, hi=10)
    warmup_steps: int = opt(0, "linear warm-up steps, then linear decay to 0", lo=0)
    weight_decay: float = opt(0.0, "AdamW weight decay", lo=0, hi=10)
    max_grad_norm: float = opt(1.0, "gradient clipping norm (0 = none)", lo=0)
    max_len: int = opt(1024, "tokens per sequence; longer prompts lose their earliest context examples",
                       lo=8, hi=1_000_000)
    lora_r: int = opt(16, "LoRA rank", lo=1, hi=4096)
    lora_alpha: float = opt(32.0, "LoRA scaling numerator (scale = lora_alpha / lora_r)", lo=0, lo_open=True,
                            hi=1e6)
    lora_dropout: float = opt(0.05, "LoRA dropout", lo=0, hi=1, hi_open=True)
    lora_targets: str = opt("attn", "attn = q,k,v (the paper); attn+mlp = q,k,v,o + gate,up,down",
                            choices=("attn", "attn+mlp"))
    precision: str = opt("auto", "auto = bf16 on a GPU that has it, fp32 on CPU", choices=("auto", "no", "bf16",
                                                                                          "fp16"))
    seed: int = opt(0, "seed of contexts, batches, LoRA init and dropout", **SEED)


# ------------------------------------------------------------------------------------- argparse
def _flag(f):
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def add_args(parser, cls, title=None, skip=()):
    """Add one flag per field of dataclass `cls` (in a named argument group)."""
    g = parser.add_argument_group(title or cls.__name__)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        m = f.metadata
        kw = {"default": f.default, "dest": f.name}
        if f.type in (bool, "bool"):
            kw["action"] = "store_true"
        else:
            base = f.type if isinstance(f.type, type) else {"int": int, "float": float, "str": str}.get(
                str(f.type).replace("Optional[", "").rstrip("]"), None)
            if base is None:
                base = type(f.default) if f.default is not None else (
                    int if "int" in str(f.type) else float if "float" in str(f.type) else str)
            if base in (int, float):
                kw["type"] = number(base, m.get("lo"), m.get("hi"), m.get("lo_open", False), m.get("hi_open", False))
                kw["metavar"] = "N" if base is int else "X"
            if "choices" in m:
                kw["choices"] = m["choices"]
        text = m.get("help", "")
        if not states_default(text):  # a help text that already states its default gets no second one
            text += f" (default {f.default})" if f.default is not None else " (default: none)"
        kw["help"] = text.replace("%", "%%")
        g.add_argument(_flag(f), **kw)
    return g


_STATES_DEFAULT = re.compile(r"\(default\b|\bdefault:|\bdefault \d")


def states_default(help_text):
    """True when a help text already says what its default is ("(default: 2; 20 for ...)",
    "default 0 = ..."): add_args then adds no "(default ...)" of its own."""
    return bool(_STATES_DEFAULT.search(help_text or ""))


# Regime knobs: the regimes each one applies to (the others ignore it)
REGIME_KNOBS = {"alpha": ("contrastive", "random+similar"), "beta": ("contrastive",), "rho": ("contrastive",),
                "repeat": ("contrastive",), "counterfactual": ("contrastive",),
                "zero_frac": ("random", "contrastive", "random+similar"), "min_avg_sim": ("similar",),
                "top_m": ("similar", "contrastive", "random+similar")}
LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets")


def applicable(d):
    """The flags of a parsed command line (a dict or Namespace) that apply to it, for printing the
    configuration: task flags of other tasks (e.g. --metric, --src with --task alignment), LoRA flags of a
    --full run and regime knobs the --regime ignores are left out. The saved config keeps everything."""
    d = dict(vars(d) if not isinstance(d, dict) else d)
    drop = set()
    if d.get("task") in TASK_OPTIONS:
        drop |= {f.name for f in dataclasses.fields(TaskConfig)} - set(TASK_OPTIONS[d["task"]]) - {"task"}
    if d.get("full"):
        drop |= set(LORA_FIELDS)
    if d.get("regime") in REGIMES:
        drop |= {k for k, regimes in REGIME_KNOBS.items() if d["regime"] not in regimes}
    return {k: v for k, v in d.items() if k not in drop}


def from_args(cls, args):
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def to_argv(obj, skip=()):
    """The flags that rebuild `obj` (fields equal to their default are left out)."""
    out = []
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if f.name in skip or v == f.default or v is None:
            continue
        if isinstance(v, bool):
            out += [_flag(f)] if v else []
        else:
            out += [_flag(f), str(v)]
    return out


def semantic_diff(old, new, ignore=()):
    """First key whose value differs between two config dicts (None when they agree)."""
    for k in new:
        if k not in ignore and k in old and old[k] != new[k]:
            return k
    return None


def task_options(cfg):
    """Constructor options for tasks.load_task; a flag set for a task that does not take it is an error."""
    if cfg.task not in TASK_OPTIONS:
        raise UserError(f"unknown task '{cfg.task}' (choose from {', '.join(TASKS)})")
    takes = TASK_OPTIONS[cfg.task]
    defaults = TaskConfig()
    for f in dataclasses.fields(TaskConfig):
        if f.name != "task" and f.name not in takes and getattr(cfg, f.name) != getattr(defaults, f.name):
            raise UserError(f"{_flag(f)} does not apply to task {cfg.task} (it takes: "
                            f"{', '.join(_flag(g) for g in dataclasses.fields(TaskConfig) if g.name in takes)})")
    return {ctor: getattr(cfg, name) for name, ctor in takes.items()}


def task_config_dict(cfg):
    """The task part of a saved config: only the fields the task takes (plus its name)."""
    return {"task": cfg.task, **{k: getattr(cfg, k) for k in TASK_OPTIONS.get(cfg.task, {})}}
