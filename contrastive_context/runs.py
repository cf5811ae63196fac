"""The run folder of train.py, owned here: its files, its checkpoints, where its weights are, its config.

    RUN/
      cc_output.json      the marker that makes the folder a run (outputs.py, kind "train-run")
      config.json         every flag of the run, the sampling config of its training contexts
                          ("training_contexts") and what it planned (`write_config`, `read_config`)
      contexts.jsonl      (+ .meta.json) the contexts the run sampled (sampled runs only)
      paraphrases.jsonl   paraphrases made on the fly (alignment, --rho without --paraphrases)
      train_log.jsonl     {step, loss, lr, tokens_per_s}
      tb/                 TensorBoard event files (--report-to tensorboard; wandb/ with --report-to wandb)
      checkpoint-<step>/  weights + trainer_state.json; the newest --keep-checkpoints N also hold
                          trainer_state.pt and rng_state_<rank>.pt, what --resume needs
      final/              the weights at the end (its trainer_state.json names the step)

Weights are a LoRA adapter (adapter_config.json, adapter_model.safetensors and cc_base.json, the
signature of the base model it was trained on: models.check_base_signature) or, for --full and
--model scratch runs, a whole HF model folder (model.safetensors). A published adapter (reproduce.py's
OUT/adapters/<regime>/, `export_adapter`) is such an adapter folder alone: its base model is the one
its adapter_config.json names.

    claim, write_config, check_resume        preparing a run folder (train.py)
    list_checkpoints, last_checkpoint        the one lister of a run's weights, LoRA or full
    resolve_weights                          the one resolver of --adapter: RUN, RUN/final, RUN/checkpoint-N,
                                             an adapter folder (adapter_folder, adapter_base: its steps)
    read_config, check_config, apply_config  a run's config.json as evaluate.py and probes.py read it
    apply_config_file                        a run's config.json as train.py --config reads it (a re-run)
"""
import dataclasses
import glob
import json
import os
import re
import shutil
from typing import Optional

from . import config
from .common import UserError, file_sha256, read_json, write_json_atomic
from .outputs import check_out_not_input, claim_output_dir

KIND = "train-run"                    # the kind in a run's cc_output.json
CONFIG = "config.json"
TRAIN_LOG = "train_log.jsonl"
CONTEXTS = "contexts.jsonl"
PARAPHRASES = "paraphrases.jsonl"
FINAL = "final"
CHECKPOINT_RE = re.compile(r"checkpoint-(\d+)")
STATE_JSON = "trainer_state.json"     # {"step", "loss"} in every checkpoint-<step>/ and final/
RESUME_STATE = "trainer_state.pt"     # with rng_state_<rank>.pt: what --resume needs beyond the weights
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
FULL_WEIGHTS = "model.safetensors"    # (or its .index.json when sharded)
BASE_SIGNATURE_FILE = "cc_base.json"  # beside an adapter: the base model it fits (models.base_signature)
TENSORBOARD = "tb"                    # --report-to tensorboard: the event files (the tracker's project name)
# config.json = every flag of train.py (its argparse dest) + what the run planned and ran with (these keys):
PLANNED_KEYS = ("training_contexts", "task_config", "total_steps", "epochs_planned", "contexts_source", "lora_modules", "contexts_sha256",
                "trainable_params", "world_size", "torch")
# flags of one invocation, not of the run: never taken from a config.json by --config (config.NOT_OF_THE_RUN)
INVOCATION_FLAGS = config.not_of_the_run("invocation", "resume")


# ----------------------------------------------------------------------------- paths
def config_path(run):
    return os.path.join(run, CONFIG)


def log_path(run):
    return os.path.join(run, TRAIN_LOG)


def contexts_path(run):
    return os.path.join(run, CONTEXTS)


def paraphrases_path(run):
    return os.path.join(run, PARAPHRASES)


def tensorboard_dir(run):
    return os.path.join(run, TENSORBOARD)


def final_dir(run):
    return os.path.join(run, FINAL)


def checkpoint_dir(run, step):
    return os.path.join(run, f"checkpoint-{step}")


def rng_state_path(ckpt, rank):
    return os.path.join(ckpt, f"rng_state_{rank}.pt")


def base_signature_path(adapter_dir):
    return os.path.join(adapter_dir, BASE_SIGNATURE_FILE)


# ----------------------------------------------------------------------------- preparing a run folder
def claim(out, inputs, overwrite=False, resume=False):
    """The run folder `out`, checked and locked for train.py: an OutputDir to use as `with claim(...) as
    run:` (call `run.start()` once every input is validated). It must not be or hold one of the `inputs`,
    and must be missing, empty or a run (its cc_output.json); --resume and --overwrite exclude each other."""
    if resume and overwrite:
        raise UserError("--resume continues the run in --out and --overwrite replaces it: give one of them")
    check_out_not_input(out, inputs, is_dir=True)
    # ours (cc_output.json) or empty, and locked; an early failure leaves no trace in a new folder
    return claim_output_dir(out, KIND, "train.py", overwrite=overwrite, resume=resume)


def write_config(run, cfg):
    write_json_atomic(config_path(run), cfg)


def check_resume(run, new, ignore):
    """--resume needs the settings the run was started with: the first key of `new` (not in `ignore`)
    whose value differs from the run's config.json is an error (a changed flag or contexts file)."""
    path = config_path(run)
    if not os.path.isfile(path):
        return
    old = read_json(path, "run config")
    diff = [k for k in new if k not in ignore and k in old and old[k] != new[k]]
    if diff:
        k = diff[0]
        raise UserError(f"--resume: {run} was trained with {k}={old[k]!r}, now {k}={new[k]!r}")


# ----------------------------------------------------------------------------- checkpoints
def checkpoint_kind(folder):
    """What a checkpoint-<step>/ or final/ folder holds: "lora" (a peft adapter), "full" (a whole
    model, --full and --model scratch runs) or None (no weights)."""
    if os.path.isfile(os.path.join(folder, ADAPTER_CONFIG)):
        return "lora"
    if any(os.path.isfile(os.path.join(folder, f)) for f in (FULL_WEIGHTS, FULL_WEIGHTS + ".index.json")):
        return "full"
    return None


def _step_checkpoints(run):
    """{step: folder} of the checkpoint-<step>/ folders that hold weights."""
    found = {}
    for d in glob.glob(os.path.join(run, "checkpoint-*")):
        m = CHECKPOINT_RE.fullmatch(os.path.basename(d))
        if m and checkpoint_kind(d):
            found[int(m.group(1))] = d
    return found


def final_step(run, default):
    """The step final/ was saved at: its trainer_state.json, else the run's total_steps, else `default`."""
    for path, key in ((os.path.join(final_dir(run), STATE_JSON), "step"), (config_path(run), "total_steps")):
        if os.path.isfile(path):
            data = read_json(path, "trainer state" if key == "step" else "run config")
            if not isinstance(data, dict):
                raise UserError(f"{path}: expected a JSON object, got {type(data).__name__}")
            step = data.get(key)
            if step is not None and (not isinstance(step, int) or isinstance(step, bool) or step < 1):
                raise UserError(f"{path}: \"{key}\" must be an integer >= 1, got {step!r}")
            if step is not None:
                return step
    return default


def list_checkpoints(run, with_base=False):
    """[(step, name, folder, kind)] by step: every checkpoint-<step>/ and final/ that holds weights,
    LoRA or full (kind: checkpoint_kind). final/ is left out when a checkpoint has its step.
    with_base: first (0, "base", None, None), the base model (probes.py's step 0), then steps >= 1."""
    found = {s: (os.path.basename(d), d) for s, d in _step_checkpoints(run).items()}
    final = final_dir(run)
    if checkpoint_kind(final):
        found.setdefault(final_step(run, max(found, default=0) + 1), (FINAL, final))
    listed = [(s, name, d, checkpoint_kind(d)) for s, (name, d) in sorted(found.items())]
    return [(0, "base", None, None)] + [c for c in listed if c[0] > 0] if with_base else listed


def last_checkpoint(run):
    """The resumable checkpoint-<step>/ (weights and trainer_state.pt) of the highest step, or None."""
    found = [(s, d) for s, d in _step_checkpoints(run).items() if os.path.isfile(os.path.join(d, RESUME_STATE))]
    return max(found)[1] if found else None


def slim_checkpoints(run, keep):
    """--keep-checkpoints: only the newest `keep` checkpoint-<step>/ folders stay resumable; the older
    ones lose their optimizer/scheduler/RNG state (trainer_state.pt, rng_state_*.pt: 2/3 of a full-weight
    checkpoint) and keep their weights and trainer_state.json (probes.py scores every checkpoint's
    weights). keep = 0: keep everything. trainer_state.pt goes first, so an interrupted slimming leaves
    a folder that --resume no longer picks (last_checkpoint), never a half-resumable one."""
    if not keep:
        return
    resumable = sorted((s, d) for s, d in _step_checkpoints(run).items()
                       if os.path.isfile(os.path.join(d, RESUME_STATE)))
    for _, d in resumable[:-keep]:
        os.remove(os.path.join(d, RESUME_STATE))
        for f in glob.glob(os.path.join(d, "rng_state_*.pt")):
            os.remove(f)


# ----------------------------------------------------------------------------- weights
@dataclasses.dataclass(frozen=True)
class Weights:
    """Where trained weights are: `folder` holds a LoRA adapter (kind "lora") or a whole model (kind
    "full"); `config` is the run's config.json (checked: check_config) when they belong to a run."""
    folder: str
    kind: str
    config: Optional[dict]


def adapter_folder(path):
    """A LoRA adapter folder: `path` itself, or a run folder's final/ adapter."""
    if os.path.isfile(os.path.join(path, ADAPTER_CONFIG)):
        return path
    final = final_dir(path)
    if os.path.isfile(os.path.join(final, ADAPTER_CONFIG)):
        return final
    raise UserError(f"no LoRA adapter in {path} (expected adapter_config.json, or a run folder with final/)")


def adapter_base(path):
    """The base model name recorded in an adapter's config (what train.py trained on)."""
    cfg_path = os.path.join(adapter_folder(path), ADAPTER_CONFIG)
    try:
        with open(cfg_path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read {cfg_path}: {' '.join(str(e).split())[:200]}") from None
    if not isinstance(cfg, dict):
        raise UserError(f"{cfg_path}: expected a JSON object")
    return cfg.get("base_model_name_or_path")


def resolve_weights(path, where=None):
    """--adapter RUN, RUN/final, RUN/checkpoint-N or an adapter folder (e.g. a published one) -> Weights.
    A --full run saved whole models (RUN -> RUN/final, RUN/final, RUN/checkpoint-N); anything else is a
    LoRA adapter (adapter_folder), with the config.json of the run folder holding it, if any. The config
    is checked (check_config; `where` names it in errors, default "<path>: its run config.json")."""
    where = where or f"{path}: its run config.json"
    if not os.path.isdir(path):
        raise UserError(f"adapter folder not found: {path}")
    for run, weights in ((path, final_dir(path)), (os.path.dirname(os.path.abspath(path)), path)):
        if os.path.isfile(config_path(run)) and os.path.isfile(os.path.join(weights, FULL_WEIGHTS)):
            cfg = read_json(config_path(run), "run config")
            if isinstance(cfg, dict) and cfg.get("full"):
                return Weights(weights, "full", check_config(cfg, where))
    adapter = adapter_folder(path)
    cfg_path = config_path(os.path.dirname(os.path.abspath(adapter)))
    cfg = read_json(cfg_path, "run config") if os.path.isfile(cfg_path) else None
    return Weights(adapter, "lora", check_config(cfg, where))


def export_adapter(src, dst, dtype="float16"):
    """A compact copy of a trained LoRA adapter for publishing (e.g. under results/): the weights
    cast to `dtype` (fp16 halves the size; loading casts them back to the base model's dtype),
    with adapter_config.json and the base-model signature. `src` is an adapter folder or a run
    folder (its final/). Written to a temporary folder, then renamed: `dst` is never partial."""
    import torch
    from safetensors.torch import load_file, save_file
    src = adapter_folder(src)
    weights = os.path.join(src, ADAPTER_WEIGHTS)
    if not os.path.isfile(weights):
        raise UserError(f"no {ADAPTER_WEIGHTS} in {src}")
    tmp = os.path.join(os.path.dirname(os.path.abspath(dst)), f".{os.path.basename(os.path.normpath(dst))}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        cast = getattr(torch, dtype)
        save_file({k: v.to(cast).contiguous() for k, v in load_file(weights).items()},
                  os.path.join(tmp, ADAPTER_WEIGHTS), metadata={"format": "pt", "dtype": dtype})
        for f in (ADAPTER_CONFIG, BASE_SIGNATURE_FILE):
            if os.path.isfile(os.path.join(src, f)):
                shutil.copyfile(os.path.join(src, f), os.path.join(tmp, f))
        shutil.rmtree(dst, ignore_errors=True)
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


# ----------------------------------------------------------------------------- a run's config.json
def is_run(run):
    return os.path.isfile(config_path(run))


def read_config(run):
    """The run's config.json, checked (check_config)."""
    return check_config(read_json(config_path(run), "run config"), config_path(run))


def task_flags(cfg):
    """Task flags saved in a train.py run config (`task_config` dict, or top-level keys)."""
    flags = cfg.get("task_config") if isinstance(cfg.get("task_config"), dict) else cfg
    return {k: flags[k] for k in config.TASK_KEYS if k in flags}


def check_config(cfg, where):
    """A train.py run's config.json as evaluate.py and probes.py read it (--adapter RUN, --run RUN): an
    object whose "model" is a name, whose task flags have the types and ranges of config.TaskConfig, and
    whose "full" / "regime" are what train.py writes. Anything else (a hand-edited "model": 123) is ONE
    UserError naming `where` and the field, before any model is loaded. None stays None."""
    if cfg is None:
        return cfg
    if not isinstance(cfg, dict):
        raise UserError(f"{where}: a run config must be a JSON object, got {type(cfg).__name__}")
    for key, ok, want in (("model", lambda v: v is None or (isinstance(v, str) and v.strip()), "a model name"),
                          ("full", lambda v: isinstance(v, bool), "true or false"),
                          ("regime", lambda v: isinstance(v, str), "a string"),
                          ("task_config", lambda v: isinstance(v, dict), "an object")):
        if key in cfg and not ok(cfg[key]):
            raise UserError(f"{where}: \"{key}\" must be {want}, got {str(cfg[key])[:60]!r}")
    flags = task_flags(cfg)
    for f in dataclasses.fields(config.TaskConfig):
        if f.name not in flags:
            continue
        v, optional, m = flags[f.name], "Optional" in str(f.type), f.metadata
        kind = int if "int" in str(f.type) else float if "float" in str(f.type) else str
        good = (v is None and optional) or (isinstance(v, kind) and not isinstance(v, bool))
        if good and v is not None:
            good = ("choices" not in m or v in m["choices"]) and \
                (m.get("lo") is None or v >= m["lo"]) and (m.get("hi") is None or v <= m["hi"])
        if not good:
            raise UserError(f"{where}: task flag \"{f.name}\" = {str(v)[:60]!r} is not a valid "
                            f"--{f.name.replace('_', '-')}")
    return cfg


def apply_config(args, cfg, given):
    """Fill task flags and --model from a run config where the command line did not set them (`given`:
    config.explicit_dests). Returns the names filled in."""
    if not cfg:
        return []
    taken = []
    for k, v in task_flags(cfg).items():
        if k not in given and getattr(args, k, None) != v:
            setattr(args, k, v)
            taken.append(k)
    if args.model is None and cfg.get("model"):
        args.model = cfg["model"]
        taken.append("model")
    return taken


# ----------------------------------------------------------------------------- train.py --config
def apply_config_file(args, parser, given):
    """train.py --config RUN/config.json (or RUN): every flag the run's config.json records is set on `args`,
    unless the command line gave it (`given`: config.explicit_dests), each checked as the flag would be on the
    command line (type, range, choices). Not taken: the keys of the run's plan (PLANNED_KEYS) and the flags of
    one invocation (INVOCATION_FLAGS: --out, --resume...); paraphrases the run made on the fly
    (RUN/paraphrases.jsonl) are made again. A --contexts file taken from it must be the one the run used (its
    sha256). A file that is not a run config of train.py, a key that is no flag of `parser` (any more) or a bad
    value is ONE UserError naming the file and the key. Returns the names set."""
    path = config_path(args.config) if os.path.isdir(args.config) else args.config
    where = f"--config {path}"
    if not os.path.isfile(path):
        raise UserError(f"{where}: file not found (give the config.json of a train.py run)")
    cfg = read_json(path, "run config")
    if not isinstance(cfg, dict):
        raise UserError(f"{where}: not a run config of train.py (expected a JSON object, got {type(cfg).__name__})")
    for key in ("model", "task", "total_steps"):
        if key not in cfg:
            raise UserError(f"{where}: not a run config of train.py (it has no \"{key}\")")
    check_config(cfg, where)
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}
    flags = {}
    for key, value in cfg.items():
        if key in PLANNED_KEYS or key in INVOCATION_FLAGS:
            continue
        if key not in actions:
            raise UserError(f"{where}: \"{key}\" is not a flag of train.py (any more); remove it from the file "
                            f"to re-run without it")
        flags[key] = _flag_value(actions[key], value, f"{where}: \"{key}\" = {str(value)[:60]!r}")
    if flags.get("paraphrases") is not None and isinstance(cfg.get("out"), str) and \
            os.path.normpath(flags["paraphrases"]) == os.path.normpath(paraphrases_path(cfg["out"])):
        flags["paraphrases"] = None  # made on the fly by the run (an --out never holds an input): made again
    taken = [k for k in flags if k not in given]
    for k in taken:
        setattr(args, k, flags[k])
    sha = cfg.get("contexts_sha256")
    if sha and "contexts" in taken and args.contexts and os.path.isfile(args.contexts) and \
            file_sha256(args.contexts) != sha:
        raise UserError(f"{where}: the contexts file {args.contexts} changed since the run (its sha256 was "
                        f"{str(sha)[:12]}..., now {file_sha256(args.contexts)[:12]}...)")
    return taken


def _flag_value(action, value, where):
    """`value` from a config file as the argparse `action` of its flag would give it, else UserError(where)."""
    import argparse
    flag = action.option_strings[-1]
    if action.nargs == 0:  # store_true
        if not isinstance(value, bool):
            raise UserError(f"{where} is not true or false ({flag})")
        return value
    if value is None:
        if action.default is not None:
            raise UserError(f"{where} is not a valid {flag} (it needs a value)")
        return None
    if isinstance(value, (bool, list, dict)) or (action.type is None and not isinstance(value, str)):
        raise UserError(f"{where} is not a valid {flag}")
    if action.type is not None:
        try:
            value = action.type(str(value))
        except (argparse.ArgumentTypeError, TypeError, ValueError) as e:
            raise UserError(f"{where} is not a valid {flag}: {e}") from None
    if action.choices is not None and value not in action.choices:
        raise UserError(f"{where} is not a valid {flag} (choose from {', '.join(map(str, action.choices))})")
    return value
