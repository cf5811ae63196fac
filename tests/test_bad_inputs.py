"""Table-driven bad-input test (issue 13): every script on a catalogue of hostile inputs.

Each case asserts: a non-zero exit (2; 130/143 for signals), exactly ONE `error:` line on
stderr, no traceback, and nothing new or changed on disk (the shared input folder and the
case's own folder are snapshotted before and after; a case may allow named resumable files).
Cases run IN-PROCESS (import the script, call its main through common.run_main, capture
stdout/stderr) except those that need a signal or might run away without a fix (those run as
subprocesses under a 6 GB address-space limit and a timeout).

Case ids name the issue item: item<N>-<script>-<what> (issue 13), i22-item<N>-<script>-<what>
(issue 22: data loss). `figure3` is the Figure-3 comparison (`figure3.py`); `studies/context_use`
is studies/context_use.py. A case's setup may return a callable, run after the case (e.g. to
release a lock it holds).
Kinds:  error   exit 2, one error line, no traceback, disk unchanged
        clean   exit 0 or the `error` contract (input the scripts may legitimately accept,
                e.g. a test input without any BM25 token): never a traceback
        signal  SIGTERM mid-work: exit 143, one error line, no traceback, no hidden *.tmp or
                0-byte files left (resumable partial work is allowed)
"""
import contextlib
import hashlib
import importlib
import inspect
import io
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HUGE = str(2**70)

_SUBJ = ["A man", "A woman", "Two dogs", "A child", "The girl", "Three men", "A boy", "An old lady"]
_VERB = ["is running in the park", "plays with a red ball", "is sitting on a bench", "walks down the street",
         "is eating an apple", "looks at the camera"]


def _pairs(n, offset=0):
    return [(f"{_SUBJ[(i + offset) % 8]} {_VERB[(i * 5 + offset) % 6]}.",
             f"Ein Satz {i + offset} {_VERB[(i * 5 + offset) % 6][:8]}.") for i in range(n)]


def _write_mt(d, train, test):
    os.makedirs(d, exist_ok=True)
    for split, pairs in (("train", train), ("test", test)):
        with open(os.path.join(d, f"{split}.en"), "w", encoding="utf-8") as f:
            f.write("".join(p[0] + "\n" for p in pairs))
        with open(os.path.join(d, f"{split}.de"), "w", encoding="utf-8") as f:
            f.write("".join(p[1] + "\n" for p in pairs))


def _mtop_item(i, ident=None):
    names, apps = ["Camilla", "Bob", "Anna", "Paul", "Maria", "John"], ["whatsapp", "skype", "messenger"]
    n, a = names[i % 6], apps[i % 3]
    return {"id": ident or f"{1000 + i}", "question": {"en": f"call {n} on {a}"},
            "mr": {"slot_intent": {"en": f"[IN:CREATE_CALL [SL:CONTACT {n} ] [SL:NAME_APP {a} ] ]"}}}


# ============================================================================ running scripts
class CaseTimeout(BaseException):
    pass


def _script_main(script):
    """(module, main callable taking argv) for a script name (studies/x for a study script)."""
    mod = importlib.import_module(script.replace("/", "."))
    return mod, mod.main, f"{script}.py", []


def run_inprocess(script, argv, timeout=90):
    """(exit code, stdout, stderr, traceback text or None), running main like `python script.py argv`."""
    import common
    mod, main, prog, prefix = _script_main(script)
    argv = prefix + list(argv)
    out, err = io.StringIO(), io.StringIO()
    takes_argv = len(inspect.signature(main).parameters) > 0
    old_argv = sys.argv
    sys.argv = [prog] + argv

    def alarm(signum, frame):
        raise CaseTimeout(f"still running after {timeout} s")
    old_alarm = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(timeout)
    code, tb = 0, None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            common.run_main(main, argv) if takes_argv else common.run_main(main)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException as e:  # noqa: BLE001 - a crash is what this test looks for
        import traceback
        code, tb = "crash", "Traceback (most recent call last):\n" + "".join(
            traceback.format_exception(type(e), e, e.__traceback__))[-3000:]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old_alarm)
        sys.argv = old_argv
    return code, out.getvalue(), err.getvalue() + (tb or ""), tb


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))  # torch + a model reserve GBs of address space
    os.setsid()


def run_subprocess(script, argv, cwd, timeout=60, sigterm_after=None, wait_for=None):
    """(exit code, stdout, stderr) of `python script argv` under a 6 GB address-space limit. With
    sigterm_after: once a stdout line matches the regex `wait_for` (the script is at work, its
    handlers installed), wait sigterm_after seconds more and send SIGTERM."""
    import threading
    _, _, prog, prefix = _script_main(script)
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CC_NO_PROGRESS="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, prog), *prefix, *argv], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_limit_memory)
    out, err = [], []
    readers = [threading.Thread(target=lambda f=f, acc=acc: acc.extend(iter(f.readline, "")), daemon=True)
               for f, acc in ((proc.stdout, out), (proc.stderr, err))]
    for r in readers:
        r.start()
    t0 = time.monotonic()
    if sigterm_after is not None:
        pattern = re.compile(wait_for or ".")
        while time.monotonic() - t0 < timeout and proc.poll() is None and not any(pattern.search(l) for l in out):
            time.sleep(0.1)
        time.sleep(sigterm_after)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=max(30.0, timeout - (time.monotonic() - t0)))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        code = "timeout"
    for r in readers:
        r.join(timeout=10)
    return code, "".join(out), "".join(err)


# ============================================================================ disk snapshots
def snapshot(*roots):
    snap = {}
    for root in roots:
        if not os.path.lexists(root):
            snap[root] = None
            continue
        for dirpath, dirs, files in os.walk(root):
            snap[dirpath] = ("dir", os.stat(dirpath).st_mode)
            for f in files:
                p = os.path.join(dirpath, f)
                st = os.lstat(p)
                if not os.path.isfile(p):
                    snap[p] = ("special", st.st_mode)
                    continue
                with open(p, "rb") as fh:
                    snap[p] = ("file", st.st_mode, hashlib.sha256(fh.read()).hexdigest())
    return snap


def diff_snapshots(before, after, allow=None):
    changes = []
    for p in sorted(set(before) | set(after)):
        if before.get(p) != after.get(p):
            if allow and before.get(p) is None and re.search(allow, p):
                continue
            what = "new" if p not in before or before[p] is None else ("gone" if p not in after else "changed")
            changes.append(f"{what}: {p}")
    return changes


def error_lines(stderr):
    return [l for l in stderr.splitlines() if re.match(r"^(\S+: )?error: ", l)]


# ============================================================================ the shared inputs
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Inputs shared by all cases (built once, with the scripts themselves where that is cheap)."""
    w = str(tmp_path_factory.mktemp("world"))
    os.environ.setdefault("CC_NO_PROGRESS", "1")
    _write_mt(f"{w}/mt", _pairs(48), _pairs(12, offset=3))
    _write_mt(f"{w}/mt31dup", _pairs(30) + _pairs(1), _pairs(6, offset=3))  # 31 lines, one duplicate
    _write_mt(f"{w}/mt_dot", _pairs(48), _pairs(4, offset=3) + [(".", "."), ("😀", "😀")])
    _write_mt(f"{w}/mt_latin1", _pairs(48), _pairs(12, offset=3))
    with open(f"{w}/mt_latin1/train.en", "ab") as f:
        f.write(b"caf\xe9 au lait\n")
    with open(f"{w}/mt_latin1/train.de", "ab") as f:
        f.write(b"Milchkaffee\n")
    os.makedirs(f"{w}/mtop_dup")
    items = [_mtop_item(i) for i in range(30)]
    items[7]["id"] = items[3]["id"]
    json.dump(items, open(f"{w}/mtop_dup/dev.json", "w"))
    json.dump([_mtop_item(i) for i in range(30, 36)], open(f"{w}/mtop_dup/test.json", "w"))
    with open(f"{w}/bad_utf8.jsonl", "wb") as f:
        f.write(b'{"id": "train-0", "x": "caf\xe9", "paraphrases": ["x"]}\n')
    with open(f"{w}/afile", "w") as f:
        f.write("a regular file\n")
    # files made by the scripts (what a user would have on disk)
    al = ["--task", "alignment", "--n-train", "50", "--n-test", "20"]
    mt = ["--task", "mt", "--data", f"{w}/mt"]
    for script, argv in (
            ("paraphrase", mt + ["--split", "train", "--n", "2", "--out", f"{w}/para_mt.jsonl"]),
            ("paraphrase", al + ["--split", "all", "--n", "2", "--out", f"{w}/para_al.jsonl"]),
            ("sample_contexts", mt + ["--regime", "random", "--out", f"{w}/ctx_mt.jsonl"]),
            ("sample_contexts", al + ["--regime", "random", "--out", f"{w}/ctx_al.jsonl"]),
            ("sample_contexts", al + ["--regime", "random", "--out", f"{w}/resume/ctx.jsonl"]),
            ("train", al + ["--regime", "random", "--contexts", f"{w}/resume/ctx.jsonl", "--model", "tiny",
                            "--max-steps", "4", "--save-every", "2", "--stop-after", "2", "--threads", "1",
                            "--out", f"{w}/resume/run"])):
        code, out, err, tb = run_inprocess(script, argv)
        assert code == 0, f"fixture {script} {argv} failed:\n{err[-3000:]}"
    rows = [json.loads(l) for l in open(f"{w}/ctx_al.jsonl", encoding="utf-8")]
    for name, field, value in (("ctx_epoch_str", "epoch", "abc"), ("ctx_context_int", "context", 5)):
        with open(f"{w}/{name}.jsonl", "w", encoding="utf-8") as f:
            for i, r in enumerate(rows):
                f.write(json.dumps(dict(r, **({field: value} if i == 3 else {}))) + "\n")
    # evaluation folders for the Figure-3 comparison
    def ev(name, rows, summary):
        os.makedirs(f"{w}/{name}")
        with open(f"{w}/{name}/predictions.jsonl", "w") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
        with open(f"{w}/{name}/summary.json", "w") as f:
            json.dump(summary, f)
    good = [{"id": f"test-{i}", "context_type": t, "max_nsim": (i % 7) / 7, "score": float(10 * (i % 5))}
            for i in range(30) for t in ("zero", "random")]
    ev("ev_a", good, {"metric": "chrf"})
    ev("ev_b", good, {"metric": "chrf"})
    ev("ev_strscore", [dict(r, score="abc") if i == 4 else r for i, r in enumerate(good)], {"metric": "chrf"})
    ev("ev_listsummary", good, [1, 2])
    ev("ev_nan", [dict(r, max_nsim=float("nan")) if i == 5 else r for i, r in enumerate(good)], {"metric": "chrf"})
    # a real, complete evaluation folder of evaluate.py (alignment), with its cc_output.json
    code, out, err, tb = run_inprocess("evaluate", al + ["--model", "tiny", "--limit", "3", "--max-new-tokens", "4",
                                                         "--threads", "1", "--out", f"{w}/ev_real"])
    assert code == 0, f"fixture evaluate failed:\n{err[-3000:]}"
    return w


# ============================================================================ the catalogue
AL = ["--task", "alignment", "--n-train", "50", "--n-test", "20"]
TR = ["--model", "tiny", "--max-steps", "2", "--threads", "1"]
TRAIN = AL + TR + ["--regime", "random", "--out", "{t}/run"]
SC = AL + ["--regime", "contrastive", "--out", "{t}/c.jsonl"]
PARA = AL + ["--backend", "perturb", "--n", "2", "--out", "{t}/p.jsonl"]
EVAL = ["--model", "tiny", "--task", "mt", "--data", "{w}/mt", "--limit", "3", "--max-new-tokens", "4",
        "--threads", "1", "--out", "{t}/ev"]
FIG = ["{w}/ev_a", "{w}/ev_b", "--out", "{t}/fig.png"]
TS = ["--steps", "3", "--n-test", "20", "--no-plot", "--out", "{t}/ts"]
PROBES = ["--run", "{w}/resume/run", "--limit", "2", "--max-new-tokens", "4", "--threads", "1",
          "--out", "{t}/probes.jsonl"]
REPRO = ["--budget", "smoke", "--threads", "1", "--out", "{t}/study"]


def _thesis(w, t):
    os.makedirs(f"{t}/k")
    with open(f"{t}/k/thesis.tex", "w") as f:
        f.write("years of work\n")


def _socket(w, t):
    s = socket.socket(socket.AF_UNIX)
    s.bind(f"{t}/sock")
    s.close()


def _change_resume_contexts(w, t):
    path = f"{w}/resume/ctx.jsonl"
    rows = [json.loads(l) for l in open(path, encoding="utf-8")]
    rows[0]["context"] = list(reversed(rows[0]["context"]))
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))


def _copy_para_mt(w, t):
    for suffix in ("", ".meta.json"):
        if os.path.exists(f"{w}/para_mt.jsonl{suffix}"):
            shutil.copy(f"{w}/para_mt.jsonl{suffix}", f"{t}/p.jsonl{suffix}")


def _copy_bad_cache(w, t):
    shutil.copy(f"{w}/bad_utf8.jsonl", f"{t}/p.jsonl")


def _corrupt_run(w, t):
    shutil.copytree(f"{w}/resume/run", f"{t}/run")
    for root, _, files in os.walk(f"{t}/run"):
        if "adapter_model.safetensors" in files and os.path.basename(root).startswith("checkpoint-"):
            p = os.path.join(root, "adapter_model.safetensors")
            data = open(p, "rb").read()
            open(p, "wb").write(data[: len(data) // 3])


def _hf_folder(w, t):
    """A Hugging Face model folder (config.json + weights) with a user's thesis next to them."""
    os.makedirs(f"{t}/hf")
    with open(f"{t}/hf/config.json", "w") as f:
        json.dump({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}, f)
    with open(f"{t}/hf/model.safetensors", "wb") as f:
        f.write(b"\0" * 4096)
    with open(f"{t}/hf/thesis.tex", "w") as f:
        f.write("years of work\n")


def _empty_folder(w, t):
    os.makedirs(f"{t}/k")


def _copy_run(w, t):
    shutil.copytree(f"{w}/resume/run", f"{t}/run")


def _copy_ev_real(w, t):
    shutil.copytree(f"{w}/ev_real", f"{t}/ev")


def _locked(kind, folder, copy):
    """Setup: a copy of an output folder of ours, locked by this (test) process like a running job."""
    def setup(w, t):
        copy(w, t)
        import common
        held = common.claim_output_dir(f"{t}/{folder}", kind, "test", reuse=True)
        return held.release
    return setup


def _ev_interrupted(w, t):
    """evaluate.py killed between predictions.jsonl and summary.json: its marker says unfinished
    (written before the new predictions), the new predictions stand beside the old summary."""
    _copy_ev_real(w, t)
    marker = f"{t}/ev/cc_output.json"
    rec = json.load(open(marker))
    del rec["complete"]
    json.dump(rec, open(marker, "w"))
    rows = [json.loads(l) for l in open(f"{t}/ev/predictions.jsonl")]
    with open(f"{t}/ev/predictions.jsonl", "w") as f:
        f.write("".join(json.dumps(dict(r, score=0.0)) + "\n" for r in rows))


def _ev_changed(w, t):
    _copy_ev_real(w, t)
    with open(f"{t}/ev/predictions.jsonl", "a") as f:
        f.write(open(f"{t}/ev/predictions.jsonl").readline())


def _partial_para(w, t):
    """The periodic save of an interrupted paraphrase.py: rows and sidecar intact, "complete": false."""
    import common
    rows = common.read_jsonl(f"{w}/para_al.jsonl")
    meta = {k: v for k, v in common.read_meta(f"{w}/para_al.jsonl").items() if k not in ("rows", "sha256")}
    common.write_jsonl_atomic(f"{t}/p.jsonl", rows[:len(rows) // 3], meta={**meta, "complete": False,
                                                                            "inputs": len(rows)})


def _ctx_in_folder(w, t):
    os.makedirs(f"{t}/run")
    shutil.copy(f"{w}/ctx_al.jsonl", f"{t}/run/ctx.jsonl")


def C(id, script, argv, kind="error", setup=None, allow=None, mode="inproc", **kw):
    return pytest.param(dict(script=script, argv=argv, kind=kind, setup=setup, allow=allow, mode=mode, **kw), id=id)


CASES = [
    # ---- 1. data loss
    C("item1-train-overwrite-non-run-folder", "train", AL + TR + ["--regime", "random", "--overwrite", "--out", "{t}/k"],
      setup=_thesis),
    # ---- 2. partial results / reproduce
    C("item2-reproduce-regimes-bogus", "reproduce", REPRO + ["--regimes", "bogus"]),
    C("item2-reproduce-zero-frac-nan", "reproduce", REPRO + ["--zero-frac", "nan"]),
    C("item2-reproduce-lr-inf", "reproduce", REPRO + ["--lr", "inf"]),
    C("item2-reproduce-threads-neg", "reproduce", REPRO + ["--threads", "-1"]),
    C("item2-reproduce-seed-huge", "reproduce", REPRO + ["--seed", HUGE]),
    C("item2-reproduce-max-steps-huge", "reproduce", REPRO + ["--max-steps", "1000000000000"]),
    C("item2-reproduce-out-under-file", "reproduce", ["--budget", "smoke", "--out", "{w}/afile/study"]),
    C("item2-reproduce-data-non-utf8", "reproduce", REPRO + ["--task", "mt", "--data", "{w}/mt_latin1"]),
    # ---- 3. files from another task / changed content
    C("item3-sample_contexts-paraphrases-from-mt", "sample_contexts", SC + ["--paraphrases", "{w}/para_mt.jsonl"]),
    C("item3-train-paraphrases-from-mt", "train", AL + TR + ["--regime", "contrastive", "--paraphrases",
                                                             "{w}/para_mt.jsonl", "--out", "{t}/run"]),
    C("item3-train-contexts-from-mt", "train", TRAIN + ["--contexts", "{w}/ctx_mt.jsonl"]),
    C("item3-paraphrase-cache-from-other-task", "paraphrase", PARA, setup=_copy_para_mt),
    C("item3-train-resume-changed-contexts", "train",
      AL + ["--regime", "random", "--contexts", "{w}/resume/ctx.jsonl", "--model", "tiny", "--max-steps", "4",
            "--save-every", "2", "--threads", "1", "--resume", "--out", "{w}/resume/run"],
      setup=_change_resume_contexts),
    C("item3-evaluate-paraphrases-from-alignment", "evaluate", EVAL + ["--paraphrases", "{w}/para_al.jsonl"]),
    # ---- 4. tracebacks where one error line is promised
    C("item4-evaluate-test-input-without-bm25-token", "evaluate",
      ["--model", "tiny", "--task", "mt", "--data", "{w}/mt_dot", "--max-new-tokens", "4", "--threads", "1",
       "--out", "{t}/ev"], kind="clean"),
    C("item4-sample_contexts-31-pool-one-duplicate", "sample_contexts",
      ["--task", "mt", "--data", "{w}/mt31dup", "--out", "{t}/c.jsonl"], kind="clean"),
    C("item4-train-31-pool-one-duplicate", "train",
      ["--task", "mt", "--data", "{w}/mt31dup"] + TR + ["--out", "{t}/run"], kind="clean"),
    C("item4-sample_contexts-top-m-larger-than-pool", "sample_contexts", SC + ["--top-m", "1000"], kind="clean"),
    C("item4-sample_contexts-data-non-utf8", "sample_contexts", ["--task", "mt", "--data", "{w}/mt_latin1",
                                                                 "--out", "{t}/c.jsonl"]),
    C("item4-train-data-non-utf8", "train", ["--task", "mt", "--data", "{w}/mt_latin1"] + TR + ["--out", "{t}/run"]),
    C("item4-paraphrase-data-non-utf8", "paraphrase", ["--task", "mt", "--data", "{w}/mt_latin1",
                                                       "--out", "{t}/p.jsonl"]),
    C("item4-evaluate-data-non-utf8", "evaluate", ["--model", "tiny", "--task", "mt", "--data", "{w}/mt_latin1",
                                                   "--out", "{t}/ev"]),
    C("item4-sample_contexts-paraphrases-non-utf8", "sample_contexts", SC + ["--paraphrases", "{w}/bad_utf8.jsonl"]),
    C("item4-train-paraphrases-non-utf8", "train", AL + TR + ["--regime", "contrastive", "--paraphrases",
                                                              "{w}/bad_utf8.jsonl", "--out", "{t}/run"]),
    C("item4-evaluate-paraphrases-non-utf8", "evaluate", EVAL + ["--paraphrases", "{w}/bad_utf8.jsonl"]),
    C("item4-paraphrase-cache-non-utf8", "paraphrase", PARA, setup=_copy_bad_cache),
    C("item4-train-contexts-non-utf8", "train", TRAIN + ["--contexts", "{w}/bad_utf8.jsonl"]),
    C("item4-train-contexts-epoch-string", "train", TRAIN + ["--contexts", "{w}/ctx_epoch_str.jsonl"]),
    C("item4-train-contexts-context-int", "train", TRAIN + ["--contexts", "{w}/ctx_context_int.jsonl"]),
    C("item4-sample_contexts-out-is-directory", "sample_contexts", AL + ["--out", "{t}"]),
    C("item4-sample_contexts-out-empty", "sample_contexts", AL + ["--out", ""]),
    C("item4-sample_contexts-out-under-file", "sample_contexts", AL + ["--out", "{w}/afile/c.jsonl"]),
    C("item4-paraphrase-out-is-directory", "paraphrase", AL + ["--out", "{t}"]),
    C("item4-paraphrase-out-empty", "paraphrase", AL + ["--out", ""]),
    C("item4-paraphrase-out-under-file", "paraphrase", AL + ["--out", "{w}/afile/p.jsonl"]),
    C("item4-train-out-is-file", "train", AL + TR + ["--out", "{w}/afile"]),
    C("item4-train-out-empty", "train", AL + TR + ["--out", ""]),
    C("item4-train-out-under-file", "train", AL + TR + ["--out", "{w}/afile/run"]),
    C("item4-evaluate-out-is-file", "evaluate", EVAL[:-2] + ["--out", "{w}/afile"]),
    C("item4-evaluate-out-empty", "evaluate", EVAL[:-2] + ["--out", ""]),
    C("item4-evaluate-out-under-file", "evaluate", EVAL[:-2] + ["--out", "{w}/afile/ev"]),
    C("item4-theory_sim-out-is-file", "theory_sim", TS[:-2] + ["--out", "{w}/afile"]),
    C("item4-theory_sim-out-empty", "theory_sim", TS[:-2] + ["--out", ""]),
    C("item4-theory_sim-out-under-file", "theory_sim", TS[:-2] + ["--out", "{w}/afile/ts"]),
    C("item4-probes-out-is-directory", "probes", PROBES[:-2] + ["--out", "{t}"]),
    C("item4-probes-out-empty", "probes", PROBES[:-2] + ["--out", ""]),
    C("item4-train-log-every-0", "train", TRAIN + ["--log-every", "0"]),
    C("item4-train-lr-nan", "train", TRAIN + ["--lr", "nan"]),
    C("item4-train-lr-negative", "train", TRAIN + ["--lr", "-1"]),
    C("item4-train-weight-decay-negative", "train", TRAIN + ["--weight-decay", "-1"]),
    C("item4-train-lora-dropout-1.5", "train", TRAIN + ["--lora-dropout", "1.5"]),
    C("item4-train-threads-negative", "train", AL + ["--model", "tiny", "--max-steps", "2", "--threads", "-1",
                                                     "--out", "{t}/run"]),
    C("item4-train-seed-huge", "train", TRAIN + ["--seed", HUGE]),
    C("item4-sample_contexts-seed-huge", "sample_contexts", SC + ["--seed", HUGE]),
    C("item4-paraphrase-seed-huge", "paraphrase", PARA + ["--seed", HUGE]),
    C("item4-evaluate-seed-huge", "evaluate", EVAL + ["--seed", HUGE]),
    C("item4-evaluate-threads-negative", "evaluate", EVAL[:-4] + ["--threads", "-1", "--out", "{t}/ev"]),
    C("item4-evaluate-device-banana", "evaluate", EVAL + ["--device", "banana"]),
    C("item4-probes-device-banana", "probes", PROBES + ["--device", "banana"]),
    C("item4-probes-threads-negative", "probes", PROBES[:-4] + ["--threads", "-1", "--out", "{t}/probes.jsonl"]),
    C("item4-theory_sim-dim-1e8", "theory_sim", TS + ["--dim", "1e8"]),
    C("item4-theory_sim-dim-100000000", "theory_sim", TS + ["--dim", "100000000"], mode="subproc"),
    C("item4-theory_sim-seed-huge", "theory_sim", TS + ["--seed", HUGE]),
    C("item4-figure3-string-score", "figure3", ["{w}/ev_a", "{w}/ev_strscore", "--out", "{t}/fig.png"]),
    C("item4-figure3-list-summary", "figure3", ["{w}/ev_a", "{w}/ev_listsummary", "--out", "{t}/fig.png"]),
    C("item4-figure3-out-is-directory", "figure3", FIG[:-2] + ["--out", "{t}"]),
    C("item4-figure3-seed-huge", "figure3", FIG + ["--seed", HUGE]),
    # ---- 5. NaN and inf
    C("item5-sample_contexts-alpha-nan", "sample_contexts", SC + ["--alpha", "nan"]),
    C("item5-sample_contexts-beta-inf", "sample_contexts", SC + ["--beta", "inf"]),
    C("item5-sample_contexts-rho-nan", "sample_contexts", SC + ["--rho", "nan"]),
    C("item5-sample_contexts-zero-frac-nan", "sample_contexts", SC + ["--zero-frac", "nan"]),
    C("item5-sample_contexts-min-avg-sim-nan", "sample_contexts", AL + ["--regime", "similar", "--min-avg-sim", "nan",
                                                                        "--out", "{t}/c.jsonl"]),
    C("item5-train-alpha-nan", "train", AL + TR + ["--regime", "contrastive", "--alpha", "nan", "--out", "{t}/run"]),
    C("item5-train-lr-inf", "train", TRAIN + ["--lr", "inf"]),
    C("item5-train-lora-alpha-nan", "train", TRAIN + ["--lora-alpha", "nan"]),
    C("item5-paraphrase-min-nsim-nan", "paraphrase", PARA + ["--min-nsim", "nan"]),
    C("item5-theory_sim-lr-nan", "theory_sim", TS + ["--lr", "nan"]),
    C("item5-theory_sim-mix-inf", "theory_sim", TS + ["--mix", "inf"]),
    C("item5-figure3-nan-max-nsim", "figure3", ["{w}/ev_a", "{w}/ev_nan", "--out", "{t}/fig.png"]),
    # ---- 7. leftovers
    C("item7-paraphrase-llm-fails-no-0-byte-out", "paraphrase", ["--task", "mt", "--data", "{w}/mt", "--backend",
                                                                 "llm", "--model", "no-such-model",
                                                                 "--out", "{t}/p.jsonl"]),
    C("item7-sample_contexts-out-special-file", "sample_contexts", AL + ["--out", "{t}/sock"], setup=_socket),
    C("item7-paraphrase-out-special-file", "paraphrase", PARA[:-2] + ["--out", "{t}/sock"], setup=_socket),
    C("item7-figure3-out-special-file", "figure3", FIG[:-2] + ["--out", "{t}/sock"], setup=_socket),
    C("item7-figure3-table-fails-no-png", "figure3", FIG + ["--table", "{w}/afile/t.md"]),
    C("item7-theory_sim-fails-no-empty-folders", "theory_sim", TS[:-2] + ["--lr", "nan", "--out", "{t}/a/b/ts"]),
    C("item7-probes-corrupted-checkpoint", "probes", ["--run", "{t}/run", "--limit", "2", "--max-new-tokens", "4",
                                                      "--threads", "1", "--out", "{t}/probes.jsonl"],
      setup=_corrupt_run, allow=r"probes\.jsonl\.partial\.jsonl(\.meta\.json)?$"),
    C("item7-train-sigterm", "train", AL + ["--regime", "random", "--model", "tiny", "--max-steps", "400",
                                            "--save-every", "3", "--threads", "1", "--out", "{t}/run"],
      kind="signal", mode="signal", wait_for=r"^model tiny", after=2.0),
    C("item7-paraphrase-llm-sigterm", "paraphrase", ["--task", "mt", "--data", "{w}/mt", "--backend", "llm",
                                                     "--model", "tiny", "--n", "5", "--save-every", "0.5",
                                                     "--out", "{t}/p.jsonl"],
      kind="signal", mode="signal", wait_for=r"^== ", after=4.0),
    C("item7-theory_sim-sigterm", "theory_sim", ["--steps", "1000000", "--no-plot", "--out", "{t}/ts"],
      kind="signal", mode="signal", wait_for=r"^== ", after=2.0),
    # ---- 8. unbounded work
    C("item8-train-max-steps-huge", "train", TRAIN + ["--max-steps", "1000000000000"], mode="subproc"),
    C("item8-theory_sim-steps-huge", "theory_sim", TS + ["--steps", "1000000000000"], mode="subproc"),
    # ---- 10. smaller
    C("item10-sample_contexts-mtop-duplicate-ids", "sample_contexts", ["--task", "semparse", "--data", "{w}/mtop_dup",
                                                                       "--out", "{t}/c.jsonl"]),
    C("item10-train-mtop-duplicate-ids", "train", ["--task", "semparse", "--data", "{w}/mtop_dup"] + TR +
      ["--out", "{t}/run"]),
    C("item10-paraphrase-mtop-duplicate-ids", "paraphrase", ["--task", "semparse", "--data", "{w}/mtop_dup",
                                                             "--out", "{t}/p.jsonl"]),
    C("item10-evaluate-mtop-duplicate-ids", "evaluate", ["--model", "tiny", "--task", "semparse", "--data",
                                                         "{w}/mtop_dup", "--out", "{t}/ev"]),
    # ==== issue 22 ====
    # ---- 1. only a folder with this code's marker (cc_output.json) is written into or deleted
    C("i22-item1-train-overwrite-hf-model-folder", "train", TRAIN[:-2] + ["--overwrite", "--out", "{t}/hf"],
      setup=_hf_folder),
    C("i22-item1-train-resume-hf-model-folder", "train", TRAIN[:-2] + ["--resume", "--out", "{t}/hf"],
      setup=_hf_folder),
    C("i22-item1-evaluate-hf-model-folder", "evaluate", EVAL[:-2] + ["--out", "{t}/hf"], setup=_hf_folder),
    C("i22-item1-evaluate-overwrite-hf-model-folder", "evaluate", EVAL[:-2] + ["--overwrite", "--out", "{t}/hf"],
      setup=_hf_folder),
    C("i22-item1-reproduce-out-hf-model-folder", "reproduce", REPRO[:-2] + ["--out", "{t}/hf"], setup=_hf_folder),
    C("i22-item1-sweep-out-hf-model-folder", "sweep", ["--budget", "smoke", "--no-plot", "--out", "{t}/hf"],
      setup=_hf_folder),
    C("i22-item1-train-overwrite-evaluation-folder", "train", TRAIN[:-2] + ["--overwrite", "--out", "{t}/ev"],
      setup=_copy_ev_real),
    C("i22-item1-evaluate-overwrite-run-folder", "evaluate", EVAL[:-2] + ["--overwrite", "--out", "{t}/run"],
      setup=_copy_run),
    C("i22-item1-train-resume-and-overwrite", "train", TRAIN[:-2] + ["--resume", "--overwrite", "--out", "{t}/run"],
      setup=_copy_run),
    # ---- 2. an output is never one of the script's inputs, nor inside an input folder
    C("i22-item2-sample_contexts-out-is-training-data", "sample_contexts",
      ["--task", "mt", "--data", "{w}/mt", "--out", "{w}/mt/train.en"]),
    C("i22-item2-sample_contexts-out-inside-data", "sample_contexts",
      ["--task", "mt", "--data", "{w}/mt", "--out", "{w}/mt/ctx.jsonl"]),
    C("i22-item2-sample_contexts-out-is-paraphrases", "sample_contexts",
      SC[:-2] + ["--paraphrases", "{w}/para_al.jsonl", "--out", "{w}/para_al.jsonl"]),
    C("i22-item2-sample_contexts-out-is-paraphrases-sidecar", "sample_contexts",
      SC[:-2] + ["--paraphrases", "{w}/para_al.jsonl", "--out", "{w}/para_al.jsonl.meta.json"]),
    C("i22-item2-paraphrase-out-inside-data", "paraphrase",
      ["--task", "mt", "--data", "{w}/mt", "--n", "2", "--out", "{w}/mt/train.de"]),
    C("i22-item2-figure3-out-is-summary", "figure3", ["{w}/ev_a", "{w}/ev_b", "--out", "{w}/ev_a/summary.json"]),
    C("i22-item2-figure3-table-in-eval-folder", "figure3", FIG + ["--table", "{w}/ev_b/t.md"]),
    C("i22-item2-probes-out-is-run-config", "probes", PROBES[:-2] + ["--out", "{w}/resume/run/config.json"]),
    C("i22-item2-probes-plot-in-run-folder", "probes", PROBES + ["--plot", "{w}/resume/run/probes.png"]),
    C("i22-item2-context_use-out-is-predictions", "studies/context_use",
      ["{w}/ev_a", "--labels", "a", "--task", "mt", "--data", "{w}/mt", "--out", "{w}/ev_a/predictions.jsonl"]),
    C("i22-item2-train-overwrite-folder-holding-contexts", "train",
      TRAIN[:-2] + ["--contexts", "{t}/run/ctx.jsonl", "--overwrite", "--out", "{t}/run"], setup=_ctx_in_folder),
    C("i22-item2-evaluate-out-inside-adapter-run", "evaluate",
      ["--adapter", "{w}/resume/run", "--limit", "3", "--threads", "1", "--out", "{w}/resume/run/ev"]),
    C("i22-item2-reproduce-out-inside-data", "reproduce", REPRO[:-2] + ["--task", "mt", "--data", "{w}/mt",
                                                                      "--out", "{w}/mt/study"]),
    # ---- 3. evaluate.py: no silent replacement; figure3 reads only finished evaluations
    C("i22-item3-evaluate-mt-over-complete-alignment-eval", "evaluate", EVAL[:-2] + ["--out", "{t}/ev"],
      setup=_copy_ev_real),
    C("i22-item3-figure3-interrupted-evaluation", "figure3", ["{t}/ev", "{w}/ev_a", "--out", "{t}/fig.png"],
      setup=_ev_interrupted),
    C("i22-item3-figure3-predictions-changed-after-completion", "figure3",
      ["{t}/ev", "{w}/ev_a", "--out", "{t}/fig.png"], setup=_ev_changed),
    C("i22-item3-context_use-interrupted-evaluation", "studies/context_use",
      ["{t}/ev", "--labels", "a", "--out", "{t}/cu.md"], setup=_ev_interrupted),
    # ---- 4. one process per output folder
    C("i22-item4-train-resume-locked-run", "train",
      AL + ["--regime", "random", "--contexts", "{w}/resume/ctx.jsonl", "--model", "tiny", "--max-steps", "4",
            "--save-every", "2", "--threads", "1", "--resume", "--out", "{t}/run"],
      setup=_locked("train-run", "run", _copy_run)),
    C("i22-item4-evaluate-locked-folder", "evaluate", EVAL[:-2] + ["--overwrite", "--out", "{t}/ev"],
      setup=_locked("evaluation", "ev", _copy_ev_real)),
    # ---- 5. an early failure leaves nothing (so every retry is accepted)
    C("i22-item5-train-unknown-model-leaves-nothing", "train",
      AL + ["--model", "nosuchmodel", "--regime", "contrastive", "--max-steps", "2", "--threads", "1",
            "--out", "{t}/r"]),
    C("i22-item5-train-max-len-8-leaves-nothing", "train", AL + TR + ["--regime", "contrastive", "--max-len", "8",
                                                                       "--out", "{t}/r"]),
    C("i22-item5-train-unknown-model-empty-folder-stays-empty", "train",
      AL + ["--model", "nosuchmodel", "--regime", "contrastive", "--threads", "1", "--out", "{t}/k"],
      setup=_empty_folder),
    C("i22-item5-evaluate-unknown-model-leaves-nothing", "evaluate", EVAL[:-2] + ["--model", "nosuchmodel",
                                                                                  "--out", "{t}/ev"]),
    # ---- 6. the progress of an interrupted paraphrase.py is not taken as a whole file
    C("i22-item6-sample_contexts-partial-paraphrases", "sample_contexts", SC + ["--paraphrases", "{t}/p.jsonl"],
      setup=_partial_para),
    C("i22-item6-train-partial-paraphrases", "train", AL + TR + ["--regime", "contrastive", "--paraphrases",
                                                                 "{t}/p.jsonl", "--out", "{t}/run"],
      setup=_partial_para),
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case, world, tmp_path, monkeypatch, request):
    t = str(tmp_path / "case")
    os.makedirs(t)
    monkeypatch.chdir(t)
    cleanup = case["setup"](world, t) if case["setup"] else None
    if callable(cleanup):
        request.addfinalizer(cleanup)
    argv = [a.replace("{w}", world).replace("{t}", t) for a in case["argv"]]
    before = snapshot(world, t)
    repo_before = sorted(os.listdir(REPO))
    if case["mode"] == "inproc":
        code, out, err, tb = run_inprocess(case["script"], argv)
    elif case["mode"] == "subproc":
        code, out, err = run_subprocess(case["script"], argv, t, timeout=30)
    else:
        code, out, err = run_subprocess(case["script"], argv, t, timeout=90, sigterm_after=case["after"],
                                        wait_for=case.get("wait_for"))
    after = snapshot(world, t)
    report = f"exit {code}\n--- stdout (tail)\n{out[-1500:]}\n--- stderr (tail)\n{err[-3000:]}"
    assert "Traceback" not in err, report
    assert sorted(os.listdir(REPO)) == repo_before, "files appeared in the repository folder"
    if case["kind"] == "signal":
        assert code == 143, report
        assert len(error_lines(err)) == 1, report
        left = [p for p in after if p not in before and (os.path.basename(p).endswith(".tmp") or
                (after[p] and after[p][0] == "file" and os.path.getsize(p) == 0))]
        assert not left, f"leftovers after SIGTERM: {left}\n{report}"
        return
    if case["kind"] == "clean" and code == 0:
        return
    assert code == 2, report
    assert len(error_lines(err)) == 1, report
    changes = diff_snapshots(before, after, case["allow"])
    assert not changes, "disk changed:\n" + "\n".join(changes[:20]) + "\n" + report
