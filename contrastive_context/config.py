"""Every configuration is declared ONCE, here, as a dataclass with per-field help.

From these dataclasses come the command-line flags of every script (`add_args`, `add_eval_arg`),
the saved `config.json` of a run (`dataclasses.asdict`; runs.check_resume compares it on --resume),
and the flags reproduce.py passes to its stages (`to_argv`). A field named `top_m` is the flag
`--top-m`; its metadata may give `help`, `choices`, numeric bounds (`lo`, `hi`, open or
closed), `flag` (a different flag name) and `type` (the very argparse type object to use).

    TaskConfig      which task and data (tasks.load_task)
    ContextConfig   how training contexts are chosen (contexts.sample_rows)
    TrainConfig     model, LoRA / full training, optimisation and experiment tracking (train.py)
    EvalConfig      the flags evaluate.py, probes.py and reproduce.py share (reproduce.py passes them on)

The argparse value types live here too, once: `finite_float`, `int_range` (NaN, inf, garbage and
out-of-range values are refused by argparse itself: usage + one `error:` line, exit 2, before any
work starts), `SEED` (an integer in [0, SEED_MAX]; `SEED_RANGE` is the same range as field bounds)
and `THREADS` (`add_threads_arg`; 0 = `auto_threads`, applied by `set_threads`).
"""
import argparse
import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from typing import Optional

from .common import UserError

from .regimes import REGIMES  # noqa: E402  (the regimes are defined in regimes.py)

TASKS = ("alignment", "mt", "semparse", "sql")
CF_FAMILIES = ("train", "heldout")  # the counterfactual families of random+counterfactual (evaluation.py)
# where train.py --counterfactual draws its near-duplicates (contexts.train_counterfactual): the training family
# alone (the committed runs), or it and the held-out family's noun swaps (MT), leaving that family's verbs and
# prepositions as edit kinds never trained on
CF_TRAIN_FAMILIES = ("train", "train+heldout-noun")


def opt(default, help, **meta):
    """A dataclass field with its help text and validation metadata."""
    return field(default=default, metadata=dict(help=help, **meta))


# ------------------------------------------------------------------------------------- argparse types
def _bound_text(lo, hi, lo_open, hi_open):
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi:g}"
    return "a finite number"


def finite_float(lo=None, hi=None, lo_open=False, hi_open=False):
    """argparse `type=`: a finite float within [lo, hi] (open ends with lo_open/hi_open).
    NaN, inf, garbage and out-of-range values raise ArgumentTypeError (argparse: exit 2)."""
    want = _bound_text(lo, hi, lo_open, hi_open)

    def parse(text):
        try:
            v = float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected a number {want}, got {text!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"expected a finite number {want}, got {text!r}")
        if (lo is not None and (v < lo or (lo_open and v == lo))) or \
                (hi is not None and (v > hi or (hi_open and v == hi))):
            raise argparse.ArgumentTypeError(f"must be {want}, got {text}")
        return v
    parse.__name__ = "finite_float"
    return parse


def int_range(lo=None, hi=None):
    """argparse `type=`: an integer (decimal digits, optional sign; "1e12", "2.5", "nan" refused)
    within [lo, hi]."""
    want = _bound_text(lo, hi, False, False).replace("a finite number", "")

    def parse(text):
        s = str(text).strip()
        if not re.fullmatch(r"[+-]?\d+", s):
            raise argparse.ArgumentTypeError(f"expected an integer{' ' + want if want else ''}, got {text!r}")
        v = int(s)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be an integer {want}, got {text}")
        return v
    parse.__name__ = "int_range"
    return parse


def number(kind, lo=None, hi=None, lo_open=False, hi_open=False):
    """An argparse `type=` for finite numbers in a range (finite_float / int_range):
    "nan", "inf", "1e12" for an integer... are refused with one error line."""
    if kind is int:
        return int_range(lo, hi)
    return finite_float(lo, hi, lo_open, hi_open)


SEED_MAX = 2**32 - 1
SEED_RANGE = dict(lo=0, hi=SEED_MAX)     # the bounds of a seed field (what numpy, torch and random all accept)
SEED = int_range(**SEED_RANGE)           # --seed: the argparse type of a seed
THREADS = int_range(0, 1024)             # --threads: 0 = automatic (auto_threads); add_threads_arg
AUTO_THREADS_MAX = 4
THREADS_HELP = (f"torch CPU threads (default 0 = auto: the cores the 1-minute load average leaves idle, at "
                f"most {AUTO_THREADS_MAX} and at most torch's default, i.e. OMP_NUM_THREADS when set; at least 1)")


def auto_threads():
    """What --threads 0 means. OpenMP threads that share cores with other busy processes spin at
    every barrier: on a loaded 2-core machine 2 threads ran SmolLM2 training steps 30x slower than
    1, and evaluate.py took 31.6 s with torch's default against 10.2 s with 1 thread. So: the idle
    cores, capped at AUTO_THREADS_MAX and at torch's own default (which honours OMP_NUM_THREADS)."""
    import torch
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    idle = cores - int(round(os.getloadavg()[0])) if hasattr(os, "getloadavg") else cores
    return max(1, min(AUTO_THREADS_MAX, torch.get_num_threads(), idle))


def set_threads(n):
    """torch CPU threads: n >= 1 as given, 0/None = auto_threads(). Negative -> UserError.
    Returns the number of threads set."""
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
        raise UserError(f"--threads must be an integer >= 0, got {n}")
    import torch
    n = n or auto_threads()
    torch.set_num_threads(n)
    return n


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
    holdout_domains: Optional[str] = opt(None, "semparse: comma-separated MTOP domains to hold out (of alarm, calling, "
                                         "event, messaging, music, news, people, recipes, reminder, timer, weather; "
                                         "an item's domain is its top intent's, prompts/mtop_domains.json): their "
                                         "items leave every file before --test-size and --max-pool apply, so they are "
                                         "never a training target, pool example or context; their test.json items are "
                                         "the test split 'heldout' (the deployment stream)")
    max_pool: Optional[int] = opt(None, "use only the first N pool examples", lo=1)
    sql_schema: str = opt("full", "sql: schema in the prompt: every table, or only the tables named in the "
                          "gold SQL (an oracle stand-in for the paper's schema filter)", choices=("full", "used"))
    task_seed: int = opt(0, "alignment: seed of the automata (PFAs), the alignment pi and the data", **SEED_RANGE)
    align_m: int = opt(3, "alignment: input symbols per instance", lo=2, hi=25)
    align_len: int = opt(2, "alignment: output letters per symbol", lo=1, hi=64)
    n_train: int = opt(200, "alignment: pool size (training instances)", lo=2, hi=10_000_000)
    n_test: int = opt(300, "alignment: test instances", lo=1, hi=10_000_000)


# which TaskConfig fields each task takes, and under which constructor name
TASK_OPTIONS = {
    "alignment": {"task_seed": "seed", "align_m": "m", "align_len": "length", "n_train": "n_train",
                  "n_test": "n_test", "max_pool": "max_pool"},
    "mt": {"data": "data", "src": "src", "tgt": "tgt", "max_pool": "max_pool", "metric": "metric"},
    "semparse": {"data": "data", "lang": "lang", "max_pool": "max_pool", "test_size": "test_size",
                 "holdout_domains": "holdout_domains"},
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
    cf_train_family: str = opt("train", "with --counterfactual: where the counterfactual near-duplicates come "
                               "from: 'train' (default) = counterfactual.py's edits; 'train+heldout-noun' (MT) = "
                               "per target one of those or, as often, counterfactual_heldout.py's noun swaps, so "
                               "its verbs and prepositions stay edit kinds never trained on", choices=CF_TRAIN_FAMILIES)
    targets: Optional[int] = opt(None, "train on the first N pool examples only; their contexts still come from "
                                 "the whole pool (a context pool larger than the training targets)", lo=1)
    top_m: int = opt(50, "One-Near candidates: the top-M BM25 neighbours (capped at the pool size)", lo=1)
    min_avg_sim: Optional[float] = opt(None, "similar: keep only targets whose mean nsim to their context "
                                       "exceeds this (paper App. C.1)", lo=0, hi=1)
    paraphrases: Optional[str] = opt(None, "paraphrase JSONL (paraphrase.py) for --rho")


# The flags (argparse dests) that are not part of a run, each with what it is instead -- the one list of them:
#   invocation  this command only: where it writes, whether it may replace, when it stops (tests), where the flags
#               came from; never taken from a run's config.json by train.py --config (runs.INVOCATION_FLAGS)
#   resume      continue the run that --out names (a switch): never changes what a run or stage writes
#   machine     how fast, never what: torch threads (a value)
#   record      what else is written beside the weights: checkpoints kept, log rows, the closing check, tracker
#   input       where a file is: the run records the --contexts file's sha256 (contexts_sha256), not its path
#   sampling    how contexts are sampled (ContextConfig but --paraphrases, which still resolves ids): not used, and
#               not recorded in config.json, when train.py reads a --contexts file, whose sidecar says how
# Read by: train.py --resume (every kind but sampling may differ from the run's), runs.apply_config_file
# (invocation, resume), reproduce.stage_key (machine, resume: left out of a stage's record) and SAMPLING_FLAGS.
NOT_OF_THE_RUN = {
    "out": "invocation", "overwrite": "invocation", "stop_after": "invocation", "config": "invocation",
    "resume": "resume",
    "threads": "machine", "cpu_threads": "machine",  # cpu_threads: the old name, in older runs' config.json
    "save_every": "record", "log_every": "record", "keep_checkpoints": "record", "eval_limit": "record",
    "report_to": "record",
    "contexts": "input",
    **{f.name: "sampling" for f in dataclasses.fields(ContextConfig) if f.name != "paraphrases"},
}


def not_of_the_run(*kinds):
    """The dests of NOT_OF_THE_RUN of these kinds, in table order."""
    unknown = set(kinds) - set(NOT_OF_THE_RUN.values())
    if unknown:
        raise ValueError(f"not_of_the_run: unknown kind(s) {sorted(unknown)}")
    return tuple(name for name, kind in NOT_OF_THE_RUN.items() if kind in kinds)


# train.py --resume: flags that do not change the trained weights (may differ between a run and its --resume)
RESUME_IGNORES = frozenset(not_of_the_run("invocation", "resume", "machine", "record", "input"))
SAMPLING_FLAGS = not_of_the_run("sampling")

# --report-to: the experiment trackers train.py can log to (through Accelerate); "none" = none
REPORT_TO = ("none", "tensorboard", "wandb")

# A from-scratch decoder needs more, larger steps than LoRA on a pretrained model (TrainConfig)
SCRATCH_DEFAULTS = {"epochs": 20, "batch_size": 8}
PRETRAINED_DEFAULTS = {"epochs": 2, "batch_size": 2}
# The peak learning rate when --lr is not given: LoRA on a pretrained model (the paper's) or every weight (--full)
DEFAULT_LR = {"lora": 2e-4, "full": 1e-3}


def _sci(x):
    """2e-4, not 0.0002 (as the paper writes learning rates)."""
    return f"{x:.0e}".replace("e-0", "e-")


def default_lr(full):
    """train.py's learning rate when --lr is not given (examples/trl_sft.py uses the LoRA one)."""
    return DEFAULT_LR["full" if full else "lora"]


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
    lr: Optional[float] = opt(None, f"peak learning rate (default: {_sci(DEFAULT_LR['lora'])}, the paper's, for LoRA "
                              f"on a pretrained model; {_sci(DEFAULT_LR['full'])} for --full)", lo=0, lo_open=True, hi=10)
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
    seed: int = opt(0, "seed of contexts, batches, LoRA init and dropout", **SEED_RANGE)
    report_to: str = opt("none", "experiment tracker, through Accelerate, of what train_log.jsonl gets at every "
                         "logged step (loss, lr, tokens_per_s) and of the closing before/after scores: tensorboard "
                         "writes RUN/tb/ (`tensorboard --logdir RUN/tb`), wandb a Weights & Biases run (project "
                         "$WANDB_PROJECT, else contrastive-context; local files in RUN/wandb/); the package must be "
                         "installed (requirements-extras.txt has tensorboard). none = train_log.jsonl only; the "
                         "tracker never changes the weights", choices=REPORT_TO)


@dataclass
class EvalConfig:
    """The flags evaluate.py, probes.py and reproduce.py share, declared once: each script adds them with
    `add_eval_arg` (same flag, dest and type everywhere; a script may word the help for what it does with
    the value, give its own default or narrow the range), so a value reproduce.py accepts and passes on to
    evaluate.py / probes.py is one their parsers accept (tests/test_reproduce.py parses those commands)."""
    split: Optional[str] = opt(None, "test split (default: the task's first)")
    k: int = opt(4, "context size (default 4)", lo=1, hi=512)
    seed: int = opt(0, "seed of the evaluation contexts and bootstrap", type=SEED, **SEED_RANGE)
    limit: Optional[int] = opt(None, "evaluate the first N test inputs only", lo=1)
    paraphrases: Optional[str] = opt(None, "paraphrase JSONL (paraphrase.py) for random+paraphrase; default: the "
                                     "task's perturbation with an evaluation seed stream")
    batch_size: int = opt(32, "generation batch size", lo=1, hi=4096)
    max_new_tokens: Optional[int] = opt(None, "default: longest pool answer + 25%", lo=1, hi=8192)
    device: Optional[str] = opt(None, "cpu or cuda (default: cuda when available)")
    cf_family: str = opt("train", "counterfactual family of random+counterfactual: 'train' (default) = "
                         "counterfactual.py's edits (colour / number / noun swaps in MT, same-slot-type value swaps "
                         "in MTOP), the ones train.py --counterfactual trains on; 'heldout' = counterfactual_heldout.py's "
                         "edits of other kinds (MT verbs, prepositions, other nouns; MTOP intent, name/relation, "
                         "time/place and appended slots), never trained on", choices=CF_FAMILIES)
    threads: int = opt(0, THREADS_HELP, type=THREADS, lo=0, hi=1024)


TASK_KEYS = tuple(f.name for f in dataclasses.fields(TaskConfig))  # the task flags, declared once


# ------------------------------------------------------------------------------------- argparse
def _flag(f):
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _base_type(f):
    """int, float, str or bool: the value type of a dataclass field (Optional[...] unwrapped)."""
    if f.type in (bool, "bool"):
        return bool
    base = f.type if isinstance(f.type, type) else {"int": int, "float": float, "str": str}.get(
        str(f.type).replace("Optional[", "").rstrip("]"), None)
    if base is None:
        base = type(f.default) if f.default is not None else (
            int if "int" in str(f.type) else float if "float" in str(f.type) else str)
    return base


def field_type(f, lo=None, hi=None):
    """The argparse `type=` of a numeric field: its metadata's `type` object, or a finite-number type of its
    bounds. `lo` / `hi` narrow the bounds (a narrower flag accepts nothing the field's own flag refuses)."""
    m = f.metadata
    f_lo, f_hi = m.get("lo"), m.get("hi")
    if (lo is not None and f_lo is not None and lo < f_lo) or (hi is not None and f_hi is not None and hi > f_hi):
        raise ValueError(f"--{f.name}: [{lo}, {hi}] widens the declared range [{f_lo}, {f_hi}]")
    if lo is None and hi is None and "type" in m:
        return m["type"]
    return number(_base_type(f), f_lo if lo is None else lo, f_hi if hi is None else hi, m.get("lo_open", False),
                  m.get("hi_open", False))


# Hand-written, kept: dataclass -> argparse in ~40 lines with range-checked types, one-line errors and per-script
# narrowing; HfArgumentParser has none of these (and would add a transformers import to every script's -h).
def add_args(parser, cls, title=None, skip=()):
    """Add one flag per field of dataclass `cls` (in a named argument group)."""
    g = parser.add_argument_group(title or cls.__name__)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        m = f.metadata
        kw = {"default": f.default, "dest": f.name}
        base = _base_type(f)
        if base is bool:
            kw["action"] = "store_true"
        else:
            if base in (int, float):
                kw["type"] = field_type(f)
                kw["metavar"] = "N" if base is int else "X"
            if "choices" in m:
                kw["choices"] = m["choices"]
        text = m.get("help", "")
        if not states_default(text):  # a help text that already states its default gets no second one
            text += f" (default {f.default})" if f.default is not None else " (default: none)"
        kw["help"] = text.replace("%", "%%")
        g.add_argument(_flag(f), **kw)
    return g


_EVAL_FIELDS = {f.name: f for f in dataclasses.fields(EvalConfig)}


def add_eval_arg(parser, name, *flags, lo=None, hi=None, **kw):
    """Add the EvalConfig field `name` to `parser` (or an argument group) as the flag `--name` (or `flags`),
    help text as written (no metavar, no default appended: each script keeps its -h as it was). `kw` may
    give the script's own `help`, `default` or `dest`; `lo` / `hi` narrow the range (field_type)."""
    f = _EVAL_FIELDS[name]
    if "type" in kw:  # the type is the field's (narrowed by lo / hi at most): what makes values portable
        raise TypeError(f"add_eval_arg({name!r}): the type of a shared flag is declared in EvalConfig only")
    arg = {"default": f.default, "dest": f.name, "help": f.metadata.get("help")}
    if _base_type(f) in (int, float):
        arg["type"] = field_type(f, lo, hi)
    if "choices" in f.metadata:
        arg["choices"] = f.metadata["choices"]
    arg.update(kw)
    if arg["help"] is not None:
        arg["help"] = arg["help"].replace("%", "%%")
    return parser.add_argument(*(flags or (_flag(f),)), **arg)


def add_threads_arg(parser):
    """--threads, the same flag in every script (reproduce.py passes its value to each stage)."""
    return add_eval_arg(parser, "threads")


def explicit_dests(parser, argv):
    """Destinations of the options actually typed on the command line (`--flag value`, `--flag=value` and,
    where the parser allows them, abbreviations such as `--max-st 4`), even when the value typed equals the
    default: `argv` (already parsed once without error) is parsed again with every default suppressed."""
    saved = [(a, a.default) for a in parser._actions]
    try:
        for a, _ in saved:
            a.default = argparse.SUPPRESS
        typed, _ = parser.parse_known_args(list(argv))
    finally:
        for a, default in saved:
            a.default = default
    return set(vars(typed)) & {a.dest for a in parser._actions if a.option_strings}


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
    --full run, regime knobs the --regime ignores and --report-to none are left out. The saved config keeps
    everything."""
    d = dict(vars(d) if not isinstance(d, dict) else d)
    drop = {"report_to"} if d.get("report_to") == "none" else set()
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


# task fields added after results were committed: left out of the saved task config while unset, so the task
# config (and the configuration hash of every evaluation made before them) stays what it was
LATER_TASK_FIELDS = ("holdout_domains",)


def task_config_dict(cfg):
    """The task part of a saved config: only the fields the task takes (plus its name); a LATER_TASK_FIELDS
    field only when set."""
    return {"task": cfg.task, **{k: getattr(cfg, k) for k in TASK_OPTIONS.get(cfg.task, {})
                                 if k not in LATER_TASK_FIELDS or getattr(cfg, k) is not None}}
