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
    RunWriter                                writing one (train.py): config.json, contexts.jsonl, the log,
                                             checkpoints with the state of an exact --resume, final/
    list_checkpoints, last_checkpoint        the one lister of a run's weights, LoRA or full
    resolve_weights                          the one resolver of --adapter: RUN, RUN/final, RUN/checkpoint-N,
                                             an adapter folder (adapter_folder, adapter_base: its steps)
    read_config, check_config, apply_config  a run's config.json as evaluate.py and probes.py read it
    apply_config_file                        a run's config.json as train.py --config reads it (a re-run)
"""
import contextlib
import dataclasses
import glob
import json
import os
import random
import re
import shutil
from typing import Optional

from . import config
from .common import UserError, file_sha256, read_json, read_jsonl, write_json_atomic, write_jsonl_atomic
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


# ----------------------------------------------------------------------------- writing a run (train.py)
# Hand-written, kept: the checkpoints hold the optimizer, scheduler, log and per-process RNG state, so --resume
# gives an exact kill-and-resume -- the same weights and log as an uninterrupted run (tests/test_training.py) --
# which HF Trainer does not guarantee; users who want Trainer/TRL take export_sft.py's data (README "At scale").
class RunWriter:
    """The writer side of a run folder, one object per process of train.py:

        run = RunWriter(out, acc, claimed, full, keep_checkpoints, report_to)
        start, rng = run.resume(config, ignore, model, optimizer, scheduler)   # --resume: last checkpoint back
        run.start(config, contexts=(rows, task, cc, seed))   # main process: empty (--overwrite), config.json ...
        with run.training(config):                           # kept from here on; the --report-to tracker
            run.log(row); run.checkpoint(step, model, tok, optimizer, scheduler); run.write_log()
            run.finish(model, tok, step)                     # final/

    `acc` is the Accelerator (checkpoints need every process: each saves its own RNG state; only the main
    process writes anything else); `claimed` the main process's runs.claim (None elsewhere); `full`: whole
    models, else LoRA adapters; `keep_checkpoints`: --keep-checkpoints; `report_to`: --report-to.
    `log_rows` is the train log so far (what train_log.jsonl gets)."""

    def __init__(self, out, acc, claimed=None, full=False, keep_checkpoints=0, report_to="none"):
        self.out, self.acc, self.claimed, self.full = out, acc, claimed, full
        self.keep_checkpoints, self.report_to, self.log_rows = keep_checkpoints, report_to, []

    def start(self, cfg, contexts=None, paraphrases=None):
        """(main process) Empty the folder (--overwrite) and write what the run is: `paraphrases(path)`
        writes the paraphrases made on the fly, then config.json, then the sampled `contexts` (rows,
        task, context config, seed) as contexts.jsonl (a --contexts file is recorded in config.json)."""
        self.claimed.start()
        if paraphrases is not None:
            paraphrases(paraphrases_path(self.out))
        write_config(self.out, cfg)
        if contexts is not None:
            from . import contexts as ctx
            rows, task, cc, seed = contexts
            ctx.write_rows(contexts_path(self.out), rows, task, cc, seed, source="sampled")

    @contextlib.contextmanager
    def training(self, cfg):
        """From here a failure leaves the run (with its marker) for --resume / --overwrite; --report-to:
        the tracker runs inside (every process enters: Accelerate also ends the process group)."""
        if self.claimed is not None:
            self.claimed.keep()
        self._start_tracking(cfg)
        try:
            yield self
        finally:
            if self.report_to != "none":
                self.acc.end_training()

    def _start_tracking(self, cfg):
        """--report-to: the tracker, with the run's config as its hyperparameters (scalars; lists joined by
        commas; nested objects left out, their fields are top-level keys too). TensorBoard logs to RUN/tb/
        (the project name is the folder under the Accelerator's project_dir); Weights & Biases to the project
        $WANDB_PROJECT (default contrastive-context), the run named after RUN."""
        if self.report_to == "none":
            return
        hparams = {k: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else v for k, v in cfg.items()
                   if v is None or isinstance(v, (bool, int, float, str, list, tuple))}
        if self.report_to == "tensorboard":
            self.acc.init_trackers(TENSORBOARD, config=hparams)
        else:
            self.acc.init_trackers(os.environ.get("WANDB_PROJECT") or "contrastive-context", config=hparams,
                                   init_kwargs={"wandb": {"name": os.path.basename(os.path.normpath(self.out)),
                                                          "dir": self.out}})

    def log(self, row):
        """A train_log.jsonl row ({step, loss, lr, tokens_per_s}; on disk at write_log), and to the tracker."""
        self.log_rows.append(row)
        if self.acc.trackers:  # --report-to: the very values of the train_log.jsonl row
            self.acc.log({f"train/{k}": v for k, v in row.items() if k != "step"}, step=row["step"])

    def log_scores(self, scores, step):
        """--report-to: a before/after check ({context type: summary}, or None) as the scalars
        check/<context type> (mean score): the check before training at step 0, the one after at the last."""
        if self.acc.trackers and scores:
            self.acc.log({f"check/{t}": s["mean"] for t, s in scores.items() if s.get("mean") is not None},
                         step=step)

    def write_log(self):
        if self.acc.is_main_process:
            write_jsonl_atomic(log_path(self.out), self.log_rows)

    def checkpoint(self, step, model, tok, optimizer, scheduler):
        """checkpoint-<step>/: weights + what --resume needs; the log first (a kill before the checkpoint's
        rename resumes from an earlier one); then only the newest --keep-checkpoints stay resumable."""
        self.write_log()
        self._save(checkpoint_dir(self.out, step), model, tok, step, optimizer, scheduler)
        if self.acc.is_main_process:
            slim_checkpoints(self.out, self.keep_checkpoints)

    def finish(self, model, tok, step):
        """final/: the weights at the end."""
        self._save(final_dir(self.out), model, tok, step)

    def _save(self, path, model, tok, step, optimizer=None, scheduler=None):
        """Adapter (full: the whole model + tokenizer), plus trainer state unless optimizer is None, into
        a temp folder renamed into place. All processes take part: each saves its own RNG state.
        Interrupted (Ctrl-C, SIGTERM, an error), the temp folder is removed and `path` is left as it was."""
        import torch
        from . import models
        acc, main, tmp = self.acc, self.acc.is_main_process, os.path.join(os.path.dirname(path),
                                                                          f".{os.path.basename(path)}.tmp")
        try:
            if main:
                shutil.rmtree(tmp, ignore_errors=True)
                os.makedirs(tmp)
            acc.wait_for_everyone()
            if optimizer is not None:
                torch.save(rng_state(), rng_state_path(tmp, acc.process_index))
            if main:
                if self.full:
                    acc.unwrap_model(model).save_pretrained(tmp, safe_serialization=True)
                    tok.save_pretrained(tmp)
                else:
                    acc.unwrap_model(model).save_pretrained(tmp, save_embedding_layers=False)
                    models.write_base_signature(tmp, acc.unwrap_model(model))
                if optimizer is not None:
                    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                "step": step, "world": acc.num_processes, "log_rows": list(self.log_rows)},
                               os.path.join(tmp, RESUME_STATE))  # the log up to `step`
                write_json_atomic(os.path.join(tmp, STATE_JSON),
                                  {"step": step, "loss": self.log_rows[-1]["loss"] if self.log_rows else None})
            acc.wait_for_everyone()
            if main:
                shutil.rmtree(path, ignore_errors=True)
                os.replace(tmp, path)
        except BaseException:
            if main:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        acc.wait_for_everyone()

    def resume(self, cfg, ignore, model, optimizer, scheduler):
        """--resume: (start step, RNG state or None) after checking the run's settings (check_resume: the
        keys of `cfg` not in `ignore`) and restoring its last checkpoint (weights, optimizer, scheduler, the
        log). The RNG state of this process is returned, not applied: set_rng_state it last."""
        acc = self.acc
        if acc.is_main_process:
            check_resume(self.out, cfg, ignore)
        ckpt = last_checkpoint(self.out)
        if ckpt is None:
            if acc.is_main_process:
                print(f"--resume: no checkpoint in {self.out}; starting from scratch", flush=True)
            return 0, None
        state_path = os.path.join(ckpt, RESUME_STATE)
        state = load_state_file(state_path, "trainer state")
        if not isinstance(state, dict) or not all(k in state for k in ("optimizer", "scheduler", "step", "world")) \
                or not isinstance(state["step"], int) or isinstance(state["step"], bool) or state["step"] < 0:
            raise UserError(f"{state_path} is not a trainer state of train.py (optimizer, scheduler, step, world); "
                            f"{_DAMAGED.format(ckpt=ckpt)}")
        if state["world"] != acc.num_processes:
            raise UserError(f"{ckpt} was written by {state['world']} processes, now {acc.num_processes}")
        load_weights(model, ckpt, self.full)
        try:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise UserError(f"{state_path}: the optimizer state does not fit this run ({type(e).__name__}: "
                            f"{str(e)[:120]}); {_DAMAGED.format(ckpt=ckpt)}") from None
        start = state["step"]
        self.log_rows = _resumed_log(state, start, log_path(self.out))
        if acc.is_main_process:
            print(f"resuming from {ckpt} (step {start})", flush=True)
        return start, load_state_file(rng_state_path(ckpt, acc.process_index), "RNG state")


def _resumed_log(state, start, path):
    """The log rows up to `start`: the checkpoint's own copy, whatever happened to the log file; for a
    checkpoint written before checkpoints held the log, the log file's rows (each must say its step)."""
    if isinstance(state.get("log_rows"), list):
        return [r for r in state["log_rows"] if isinstance(r, dict) and isinstance(r.get("step"), int)
                and r["step"] <= start]
    return [r for r in read_jsonl(path, "train log", types={"step": int}) if r["step"] <= start] \
        if os.path.isfile(path) else []


_DAMAGED = "remove {ckpt} to resume from an earlier checkpoint, or start again with --overwrite"


def load_state_file(path, what):
    """torch.load of a state file train.py saved (trainer_state.pt, rng_state_<rank>.pt). A truncated or
    otherwise unreadable file (torch raises OSError EINVAL, RuntimeError, EOFError, UnpicklingError...) is
    ONE UserError naming it and the way out; running out of memory is left to run_main."""
    import torch
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever a damaged file makes torch or pickle raise
        from .common import environment_error
        if environment_error(e) is not None:
            raise
        raise UserError(f"{path}: unreadable {what}, the file is damaged ({type(e).__name__}: "
                        f"{' '.join(str(e).split())[:100]}); {_DAMAGED.format(ckpt=os.path.dirname(path))}") from None


def load_weights(model, folder, full):
    """Restore the trainable weights a checkpoint holds (RunWriter.checkpoint)."""
    from safetensors.torch import load_file
    if full:
        state = load_file(os.path.join(folder, FULL_WEIGHTS))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or [m for m in missing if "lm_head" not in m]:  # a tied head is not saved twice
            raise UserError(f"{folder} does not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    else:
        from peft import set_peft_model_state_dict
        set_peft_model_state_dict(model, load_file(os.path.join(folder, ADAPTER_WEIGHTS)))


def rng_state():
    """Every random stream training draws from (Python, NumPy, torch, CUDA): saved per process."""
    import numpy as np
    import torch
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    import numpy as np
    import torch
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
