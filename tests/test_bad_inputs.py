"""Table-driven bad-input test: every script on a catalogue of hostile inputs.

Each case asserts: a non-zero exit (2; 130/143 for signals), exactly ONE `error:` line on
stderr, no traceback, and nothing new or changed on disk (the shared input folder and the
case's own folder are snapshotted before and after; a case may allow named resumable files).
Cases run IN-PROCESS (import the script, call its main through common.run_main, capture
stdout/stderr) except those that need a signal or might run away without a fix (those run as
subprocesses under a 6 GB address-space limit and a timeout).

Case ids are <script>-<what>; the catalogue's sections group them by the kind of failure (data loss, files from
another task, tracebacks, NaN, unbounded work, ...). `figure3` is the Figure-3 comparison (`figure3.py`); `studies/tools/context_use`
is studies/tools/context_use.py. A case's setup may return a callable, run after the case (e.g. to
release a lock it holds).
Kinds:  error   exit 2, one error line (matching the case's `match` regex, if any), no traceback,
                disk unchanged
        ok      exit 0, no error line, no traceback, nothing new or changed on disk but the outputs
                (`allow`): input the scripts must accept
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
    from contrastive_context import common
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


def _limit_memory(mem=6 << 30, fsize=None):
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))  # torch + a model reserve GBs of address space
    if fsize is not None:  # a file-size limit (ulimit -f): writes beyond it fail with EFBIG (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    os.setsid()


def run_subprocess(script, argv, cwd, timeout=60, sigterm_after=None, wait_for=None, limits=None):
    """(exit code, stdout, stderr) of `python script argv` under a 6 GB address-space limit. With
    sigterm_after: once a stdout line matches the regex `wait_for` (the script is at work, its
    handlers installed), wait sigterm_after seconds more and send SIGTERM."""
    import threading
    _, _, prog, prefix = _script_main(script)
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CC_NO_PROGRESS="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, prog), *prefix, *argv], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: _limit_memory(**(limits or {})))
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
    os.makedirs(f"{w}/mtop_domains")  # calling (CREATE_CALL) and music (PLAY_MUSIC) items; all-music test.json
    music = [{"id": f"m{i}", "question": {"en": f"play songs by {n}"},
              "mr": {"slot_intent": {"en": f"[IN:PLAY_MUSIC [SL:MUSIC_ARTIST_NAME {n} ] ]"}}}
             for i, n in enumerate(["Adele", "Queen", "Abba", "Muse", "Blur", "Oasis"] * 5)]
    json.dump([_mtop_item(i) for i in range(30)] + music[:20], open(f"{w}/mtop_domains/dev.json", "w"))
    json.dump([_mtop_item(i) for i in range(30, 36)] + music[20:], open(f"{w}/mtop_domains/test.json", "w"))
    os.makedirs(f"{w}/mtop_music")  # music only
    json.dump(music[:20], open(f"{w}/mtop_music/dev.json", "w"))
    json.dump(music[20:], open(f"{w}/mtop_music/test.json", "w"))
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
    _world_unusable_inputs(w, al)
    return w


def _rewrite(src, dst, edit):
    """dst = the rows of src changed by edit(rows), with a VALID sidecar (src's meta): the file is refused for
    its content, not for a stale sha256 or a missing sidecar."""
    from contrastive_context import common
    rows = common.read_jsonl(src)
    meta = {k: v for k, v in (common.read_meta(src) or {}).items() if k not in ("rows", "sha256")}
    common.write_jsonl_atomic(dst, edit([dict(r) for r in rows]), meta=meta or None)


def _world_unusable_inputs(w, al):
    """Unusable inputs: bad paraphrase rows, bad contexts rows, MTOP / BIRD data that cannot be
    used as it is, and a run that trained all weights."""
    def para(i, **change):
        return lambda rows: [dict(r, **change) if n == i else r for n, r in enumerate(rows)]
    _rewrite(f"{w}/para_al.jsonl", f"{w}/para_intlabel.jsonl",
             lambda rows: [dict(r, labels=[7] * len(r["labels"])) if n == 2 else r for n, r in enumerate(rows)])
    _rewrite(f"{w}/para_al.jsonl", f"{w}/para_nl_label.jsonl",
             lambda rows: [dict(r, labels=["ab\ncd"] + r["labels"][1:]) if n == 2 else r for n, r in enumerate(rows)])
    _rewrite(f"{w}/para_mt.jsonl", f"{w}/para_mt_empty.jsonl", para(1, paraphrases=["  "]))
    _rewrite(f"{w}/ctx_al.jsonl", f"{w}/ctx_dup.jsonl", lambda rows: rows[:5] + [rows[3]] + rows[5:])
    _rewrite(f"{w}/ctx_al.jsonl", f"{w}/ctx_self.jsonl",
             lambda rows: [dict(r, context=[r["target"]] + r["context"][1:]) if n == 4 else r
                           for n, r in enumerate(rows)])
    for name, change in (("mtop_hash", dict(id="1003#copy")), ("mtop_hashp", dict(id="1004#p0")),
                         ("mtop_badlf", dict(mr={"slot_intent": {"en": "[IN:CREATE_CALL [SL:CONTACT Bob ]"}})),
                         ("mtop_emptyq", dict(question={"en": "   "}))):
        os.makedirs(f"{w}/{name}")
        items = [_mtop_item(i) for i in range(30)]
        items[5] = dict(items[5], **change)
        json.dump(items, open(f"{w}/{name}/dev.json", "w"))
        json.dump([_mtop_item(i) for i in range(30, 36)], open(f"{w}/{name}/test.json", "w"))
    import sqlite3
    os.makedirs(f"{w}/bird_badgold/databases/shop")
    conn = sqlite3.connect(f"{w}/bird_badgold/databases/shop/shop.sqlite")
    conn.execute("CREATE TABLE customer (id INTEGER PRIMARY KEY, name TEXT, city TEXT)")
    conn.executemany("INSERT INTO customer VALUES (?, ?, ?)", [(i, f"n{i}", "Rome") for i in range(8)])
    conn.commit()
    conn.close()
    q = [{"db_id": "shop", "question": f"How many customers are called n{i}?",
          "SQL": f"SELECT COUNT(*) FROM customer WHERE name = 'n{i}'"} for i in range(12)]
    json.dump(q, open(f"{w}/bird_badgold/train.json", "w"))
    json.dump(q[:2] + [{"db_id": "shop", "question": "Where do customers live?", "SQL": "SELECT town FROM customer"}],
              open(f"{w}/bird_badgold/dev.json", "w"))
    code, out, err, tb = run_inprocess("train", al + ["--model", "tiny", "--full", "--max-steps", "2", "--eval-limit",
                                                      "0", "--threads", "1", "--out", f"{w}/fullrun"])
    assert code == 0, f"fixture train --full failed:\n{err[-3000:]}"


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
        from contrastive_context import outputs
        held = outputs.claim_output_dir(f"{t}/{folder}", kind, "test", reuse=True)
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
    from contrastive_context import common
    rows = common.read_jsonl(f"{w}/para_al.jsonl")
    meta = {k: v for k, v in common.read_meta(f"{w}/para_al.jsonl").items() if k not in ("rows", "sha256")}
    common.write_jsonl_atomic(f"{t}/p.jsonl", rows[:len(rows) // 3], meta={**meta, "complete": False,
                                                                            "inputs": len(rows)})


def _ctx_in_folder(w, t):
    os.makedirs(f"{t}/run")
    shutil.copy(f"{w}/ctx_al.jsonl", f"{t}/run/ctx.jsonl")


def C(id, script, argv, kind="error", setup=None, allow=None, mode="inproc", marks=(), **kw):
    return pytest.param(dict(script=script, argv=argv, kind=kind, setup=setup, allow=allow, mode=mode, **kw), id=id,
                        marks=marks)


CASES = [
    # ---- 1. data loss
    C("train-overwrite-non-run-folder", "train", AL + TR + ["--regime", "random", "--overwrite", "--out", "{t}/k"],
      setup=_thesis),
    # ---- 2. partial results / reproduce
    C("reproduce-regimes-bogus", "reproduce", REPRO + ["--regimes", "bogus"]),
    C("reproduce-zero-frac-nan", "reproduce", REPRO + ["--extra-zero-frac", "nan"]),
    C("reproduce-lr-inf", "reproduce", REPRO + ["--lr", "inf"]),
    C("reproduce-threads-neg", "reproduce", REPRO + ["--threads", "-1"]),
    C("reproduce-seed-huge", "reproduce", REPRO + ["--seed", HUGE]),
    C("reproduce-max-steps-huge", "reproduce", REPRO + ["--max-steps", "1000000000000"]),
    C("reproduce-out-under-file", "reproduce", ["--budget", "smoke", "--out", "{w}/afile/study"]),
    C("reproduce-data-non-utf8", "reproduce", REPRO + ["--task", "mt", "--data", "{w}/mt_latin1"]),
    # ---- 3. files from another task / changed content
    C("sample_contexts-paraphrases-from-mt", "sample_contexts", SC + ["--paraphrases", "{w}/para_mt.jsonl"]),
    C("train-paraphrases-from-mt", "train", AL + TR + ["--regime", "contrastive", "--paraphrases",
                                                             "{w}/para_mt.jsonl", "--out", "{t}/run"]),
    C("train-contexts-from-mt", "train", TRAIN + ["--contexts", "{w}/ctx_mt.jsonl"]),
    C("train-contexts-fewer-epochs-than-trained", "train",
      AL + ["--model", "tiny", "--epochs", "2", "--threads", "1", "--regime", "random", "--out", "{t}/run",
            "--contexts", "{w}/ctx_al.jsonl"], match=r"holds contexts for 1 epoch\(s\) but this run trains 2 epochs"),
    C("paraphrase-cache-from-other-task", "paraphrase", PARA, setup=_copy_para_mt),
    C("train-resume-changed-contexts", "train",
      AL + ["--regime", "random", "--contexts", "{w}/resume/ctx.jsonl", "--model", "tiny", "--max-steps", "4",
            "--save-every", "2", "--threads", "1", "--resume", "--out", "{w}/resume/run"],
      setup=_change_resume_contexts),
    C("evaluate-paraphrases-from-alignment", "evaluate", EVAL + ["--paraphrases", "{w}/para_al.jsonl"]),
    # ---- 4. tracebacks where one error line is promised
    C("evaluate-test-input-without-bm25-token", "evaluate",
      ["--model", "tiny", "--task", "mt", "--data", "{w}/mt_dot", "--max-new-tokens", "4", "--threads", "1",
       "--out", "{t}/ev"], kind="clean"),
    C("sample_contexts-31-pool-one-duplicate", "sample_contexts",
      ["--task", "mt", "--data", "{w}/mt31dup", "--out", "{t}/c.jsonl"], kind="clean"),
    C("train-31-pool-one-duplicate", "train",
      ["--task", "mt", "--data", "{w}/mt31dup"] + TR + ["--out", "{t}/run"], kind="clean"),
    C("sample_contexts-top-m-larger-than-pool", "sample_contexts", SC + ["--top-m", "1000"], kind="clean"),
    C("sample_contexts-data-non-utf8", "sample_contexts", ["--task", "mt", "--data", "{w}/mt_latin1",
                                                                 "--out", "{t}/c.jsonl"]),
    C("train-data-non-utf8", "train", ["--task", "mt", "--data", "{w}/mt_latin1"] + TR + ["--out", "{t}/run"]),
    C("paraphrase-data-non-utf8", "paraphrase", ["--task", "mt", "--data", "{w}/mt_latin1",
                                                       "--out", "{t}/p.jsonl"]),
    C("evaluate-data-non-utf8", "evaluate", ["--model", "tiny", "--task", "mt", "--data", "{w}/mt_latin1",
                                                   "--out", "{t}/ev"]),
    C("sample_contexts-paraphrases-non-utf8", "sample_contexts", SC + ["--paraphrases", "{w}/bad_utf8.jsonl"]),
    C("train-paraphrases-non-utf8", "train", AL + TR + ["--regime", "contrastive", "--paraphrases",
                                                              "{w}/bad_utf8.jsonl", "--out", "{t}/run"]),
    C("evaluate-paraphrases-non-utf8", "evaluate", EVAL + ["--paraphrases", "{w}/bad_utf8.jsonl"]),
    C("paraphrase-cache-non-utf8", "paraphrase", PARA, setup=_copy_bad_cache),
    C("train-contexts-non-utf8", "train", TRAIN + ["--contexts", "{w}/bad_utf8.jsonl"]),
    C("train-contexts-epoch-string", "train", TRAIN + ["--contexts", "{w}/ctx_epoch_str.jsonl"]),
    C("train-contexts-context-int", "train", TRAIN + ["--contexts", "{w}/ctx_context_int.jsonl"]),
    C("sample_contexts-out-is-directory", "sample_contexts", AL + ["--out", "{t}"]),
    C("sample_contexts-out-empty", "sample_contexts", AL + ["--out", ""]),
    C("sample_contexts-out-under-file", "sample_contexts", AL + ["--out", "{w}/afile/c.jsonl"]),
    C("paraphrase-out-is-directory", "paraphrase", AL + ["--out", "{t}"]),
    C("paraphrase-out-empty", "paraphrase", AL + ["--out", ""]),
    C("paraphrase-out-under-file", "paraphrase", AL + ["--out", "{w}/afile/p.jsonl"]),
    C("train-out-is-file", "train", AL + TR + ["--out", "{w}/afile"]),
    C("train-out-empty", "train", AL + TR + ["--out", ""]),
    C("train-out-under-file", "train", AL + TR + ["--out", "{w}/afile/run"]),
    C("evaluate-out-is-file", "evaluate", EVAL[:-2] + ["--out", "{w}/afile"]),
    C("evaluate-out-empty", "evaluate", EVAL[:-2] + ["--out", ""]),
    C("evaluate-out-under-file", "evaluate", EVAL[:-2] + ["--out", "{w}/afile/ev"]),
    C("theory_sim-out-is-file", "theory_sim", TS[:-2] + ["--out", "{w}/afile"]),
    C("theory_sim-out-empty", "theory_sim", TS[:-2] + ["--out", ""]),
    C("theory_sim-out-under-file", "theory_sim", TS[:-2] + ["--out", "{w}/afile/ts"]),
    C("probes-out-is-directory", "probes", PROBES[:-2] + ["--out", "{t}"]),
    C("probes-out-empty", "probes", PROBES[:-2] + ["--out", ""]),
    C("train-log-every-0", "train", TRAIN + ["--log-every", "0"]),
    C("train-lr-nan", "train", TRAIN + ["--lr", "nan"]),
    C("train-lr-negative", "train", TRAIN + ["--lr", "-1"]),
    C("train-weight-decay-negative", "train", TRAIN + ["--weight-decay", "-1"]),
    C("train-lora-dropout-1.5", "train", TRAIN + ["--lora-dropout", "1.5"]),
    C("train-threads-negative", "train", AL + ["--model", "tiny", "--max-steps", "2", "--threads", "-1",
                                                     "--out", "{t}/run"]),
    C("train-seed-huge", "train", TRAIN + ["--seed", HUGE]),
    C("sample_contexts-seed-huge", "sample_contexts", SC + ["--seed", HUGE]),
    C("paraphrase-seed-huge", "paraphrase", PARA + ["--seed", HUGE]),
    C("evaluate-seed-huge", "evaluate", EVAL + ["--seed", HUGE]),
    C("evaluate-threads-negative", "evaluate", EVAL[:-4] + ["--threads", "-1", "--out", "{t}/ev"]),
    C("evaluate-device-banana", "evaluate", EVAL + ["--device", "banana"]),
    C("probes-device-banana", "probes", PROBES + ["--device", "banana"]),
    C("probes-threads-negative", "probes", PROBES[:-4] + ["--threads", "-1", "--out", "{t}/probes.jsonl"]),
    C("theory_sim-dim-1e8", "theory_sim", TS + ["--dim", "1e8"]),
    C("theory_sim-dim-100000000", "theory_sim", TS + ["--dim", "100000000"], mode="subproc"),
    C("theory_sim-seed-huge", "theory_sim", TS + ["--seed", HUGE]),
    C("figure3-string-score", "figure3", ["{w}/ev_a", "{w}/ev_strscore", "--out", "{t}/fig.png"]),
    C("figure3-list-summary", "figure3", ["{w}/ev_a", "{w}/ev_listsummary", "--out", "{t}/fig.png"]),
    C("figure3-out-is-directory", "figure3", FIG[:-2] + ["--out", "{t}"]),
    C("figure3-seed-huge", "figure3", FIG + ["--seed", HUGE]),
    # ---- 5. NaN and inf
    C("sample_contexts-alpha-nan", "sample_contexts", SC + ["--alpha", "nan"]),
    C("sample_contexts-beta-inf", "sample_contexts", SC + ["--beta", "inf"]),
    C("sample_contexts-rho-nan", "sample_contexts", SC + ["--rho", "nan"]),
    C("sample_contexts-zero-frac-nan", "sample_contexts", SC + ["--zero-frac", "nan"]),
    C("sample_contexts-min-avg-sim-nan", "sample_contexts", AL + ["--regime", "similar", "--min-avg-sim", "nan",
                                                                        "--out", "{t}/c.jsonl"]),
    C("train-alpha-nan", "train", AL + TR + ["--regime", "contrastive", "--alpha", "nan", "--out", "{t}/run"]),
    C("train-lr-inf", "train", TRAIN + ["--lr", "inf"]),
    C("train-lora-alpha-nan", "train", TRAIN + ["--lora-alpha", "nan"]),
    C("paraphrase-min-nsim-nan", "paraphrase", PARA + ["--min-nsim", "nan"]),
    C("theory_sim-lr-nan", "theory_sim", TS + ["--lr", "nan"]),
    C("theory_sim-mix-inf", "theory_sim", TS + ["--mix", "inf"]),
    C("figure3-nan-max-nsim", "figure3", ["{w}/ev_a", "{w}/ev_nan", "--out", "{t}/fig.png"]),
    # ---- 7. leftovers
    C("paraphrase-llm-fails-no-0-byte-out", "paraphrase", ["--task", "mt", "--data", "{w}/mt", "--backend",
                                                                 "llm", "--model", "no-such-model",
                                                                 "--out", "{t}/p.jsonl"]),
    C("sample_contexts-out-special-file", "sample_contexts", AL + ["--out", "{t}/sock"], setup=_socket),
    C("paraphrase-out-special-file", "paraphrase", PARA[:-2] + ["--out", "{t}/sock"], setup=_socket),
    C("figure3-out-special-file", "figure3", FIG[:-2] + ["--out", "{t}/sock"], setup=_socket),
    C("figure3-table-fails-no-png", "figure3", FIG + ["--table", "{w}/afile/t.md"]),
    C("theory_sim-fails-no-empty-folders", "theory_sim", TS[:-2] + ["--lr", "nan", "--out", "{t}/a/b/ts"]),
    C("probes-corrupted-checkpoint", "probes", ["--run", "{t}/run", "--limit", "2", "--max-new-tokens", "4",
                                                      "--threads", "1", "--out", "{t}/probes.jsonl"],
      setup=_corrupt_run, allow=r"probes\.jsonl\.partial\.jsonl(\.meta\.json)?$"),
    C("train-sigterm", "train", AL + ["--regime", "random", "--model", "tiny", "--max-steps", "400",
                                            "--save-every", "3", "--threads", "1", "--out", "{t}/run"],
      kind="signal", mode="signal", wait_for=r"^model tiny", after=2.0),
    C("paraphrase-llm-sigterm", "paraphrase", ["--task", "mt", "--data", "{w}/mt", "--backend", "llm",
                                                     "--model", "tiny", "--n", "5", "--save-seconds", "0.5",
                                                     "--out", "{t}/p.jsonl"],
      kind="signal", mode="signal", wait_for=r"^== ", after=4.0),
    C("theory_sim-sigterm", "theory_sim", ["--steps", "1000000", "--no-plot", "--out", "{t}/ts"],
      kind="signal", mode="signal", wait_for=r"^== ", after=2.0),
    # ---- 8. unbounded work
    C("train-max-steps-huge", "train", TRAIN + ["--max-steps", "1000000000000"], mode="subproc"),
    C("theory_sim-steps-huge", "theory_sim", TS + ["--steps", "1000000000000"], mode="subproc"),
    # ---- 10. smaller
    C("sample_contexts-mtop-duplicate-ids", "sample_contexts", ["--task", "semparse", "--data", "{w}/mtop_dup",
                                                                       "--out", "{t}/c.jsonl"]),
    C("train-mtop-duplicate-ids", "train", ["--task", "semparse", "--data", "{w}/mtop_dup"] + TR +
      ["--out", "{t}/run"]),
    C("paraphrase-mtop-duplicate-ids", "paraphrase", ["--task", "semparse", "--data", "{w}/mtop_dup",
                                                             "--out", "{t}/p.jsonl"]),
    C("evaluate-mtop-duplicate-ids", "evaluate", ["--model", "tiny", "--task", "semparse", "--data",
                                                         "{w}/mtop_dup", "--out", "{t}/ev"]),
    # ---- MTOP held-out domains (--holdout-domains): a domain that does not exist, a task without domains,
    # held-out domains that leave no training data
    C("holdout-sample_contexts-unknown-domain", "sample_contexts", ["--task", "semparse", "--data", "{w}/mtop_domains",
      "--holdout-domains", "music,jazz", "--out", "{t}/c.jsonl"], match=r"unknown MTOP domain 'jazz' \(valid: alarm, "),
    C("holdout-train-unknown-domain", "train", ["--task", "semparse", "--data", "{w}/mtop_domains",
      "--holdout-domains", "Music"] + TR + ["--out", "{t}/run"], match="unknown MTOP domain 'Music'"),
    C("holdout-evaluate-unknown-domain", "evaluate", ["--model", "tiny", "--task", "semparse", "--data",
      "{w}/mtop_domains", "--holdout-domains", "musik", "--threads", "1", "--out", "{t}/ev"], match="valid: alarm"),
    C("holdout-sample_contexts-mt-has-no-domains", "sample_contexts", ["--task", "mt", "--data", "{w}/mt",
      "--holdout-domains", "music", "--out", "{t}/c.jsonl"], match="--holdout-domains does not apply to task mt"),
    C("holdout-train-alignment-has-no-domains", "train", AL + TR + ["--holdout-domains", "music", "--out", "{t}/run"],
      match="--holdout-domains does not apply to task alignment"),
    C("holdout-evaluate-mt-has-no-domains", "evaluate", ["--model", "tiny", "--task", "mt", "--data", "{w}/mt",
      "--holdout-domains", "news", "--threads", "1", "--out", "{t}/ev"], match="does not apply to task mt"),
    C("holdout-train-no-training-data-left", "train", ["--task", "semparse", "--data", "{w}/mtop_music",
      "--holdout-domains", "music"] + TR + ["--out", "{t}/run"], match="leaves no training data"),
    C("holdout-sample_contexts-no-training-data-left", "sample_contexts", ["--task", "semparse", "--data",
      "{w}/mtop_music", "--holdout-domains", "music", "--out", "{t}/c.jsonl"], match="leaves no training data"),
    C("holdout-evaluate-every-domain-held-out", "evaluate", ["--model", "tiny", "--task", "semparse",
      "--data", "{w}/mtop_domains", "--holdout-domains", "calling,music", "--threads", "1", "--out", "{t}/ev"],
      match="leaves no training data"),
    C("holdout-sample_contexts-ok", "sample_contexts", ["--task", "semparse", "--data", "{w}/mtop_domains",
      "--holdout-domains", "music", "--regime", "random", "--out", "{t}/c.jsonl"], kind="ok",
      allow=r"/c\.jsonl(\.meta\.json)?$"),
    # ==== data loss and interrupted work: output folders, inputs, locks, partial files ====
    # ---- 1. only a folder with this code's marker (cc_output.json) is written into or deleted
    C("train-overwrite-hf-model-folder", "train", TRAIN[:-2] + ["--overwrite", "--out", "{t}/hf"],
      setup=_hf_folder),
    C("train-resume-hf-model-folder", "train", TRAIN[:-2] + ["--resume", "--out", "{t}/hf"],
      setup=_hf_folder),
    C("evaluate-hf-model-folder", "evaluate", EVAL[:-2] + ["--out", "{t}/hf"], setup=_hf_folder),
    C("evaluate-overwrite-hf-model-folder", "evaluate", EVAL[:-2] + ["--overwrite", "--out", "{t}/hf"],
      setup=_hf_folder),
    C("reproduce-out-hf-model-folder", "reproduce", REPRO[:-2] + ["--out", "{t}/hf"], setup=_hf_folder),
    C("sweep-out-hf-model-folder", "sweep", ["--budget", "smoke", "--no-plot", "--out", "{t}/hf"],
      setup=_hf_folder),
    C("train-overwrite-evaluation-folder", "train", TRAIN[:-2] + ["--overwrite", "--out", "{t}/ev"],
      setup=_copy_ev_real),
    C("evaluate-overwrite-run-folder", "evaluate", EVAL[:-2] + ["--overwrite", "--out", "{t}/run"],
      setup=_copy_run),
    C("train-resume-and-overwrite", "train", TRAIN[:-2] + ["--resume", "--overwrite", "--out", "{t}/run"],
      setup=_copy_run),
    # ---- 2. an output is never one of the script's inputs, nor inside an input folder
    C("sample_contexts-out-is-training-data", "sample_contexts",
      ["--task", "mt", "--data", "{w}/mt", "--out", "{w}/mt/train.en"]),
    C("sample_contexts-out-inside-data", "sample_contexts",
      ["--task", "mt", "--data", "{w}/mt", "--out", "{w}/mt/ctx.jsonl"]),
    C("sample_contexts-out-is-paraphrases", "sample_contexts",
      SC[:-2] + ["--paraphrases", "{w}/para_al.jsonl", "--out", "{w}/para_al.jsonl"]),
    C("sample_contexts-out-is-paraphrases-sidecar", "sample_contexts",
      SC[:-2] + ["--paraphrases", "{w}/para_al.jsonl", "--out", "{w}/para_al.jsonl.meta.json"]),
    C("paraphrase-out-inside-data", "paraphrase",
      ["--task", "mt", "--data", "{w}/mt", "--n", "2", "--out", "{w}/mt/train.de"]),
    C("figure3-out-is-summary", "figure3", ["{w}/ev_a", "{w}/ev_b", "--out", "{w}/ev_a/summary.json"]),
    C("figure3-table-in-eval-folder", "figure3", FIG + ["--table", "{w}/ev_b/t.md"]),
    C("probes-out-is-run-config", "probes", PROBES[:-2] + ["--out", "{w}/resume/run/config.json"]),
    C("probes-plot-in-run-folder", "probes", PROBES + ["--plot", "{w}/resume/run/probes.png"]),
    C("context_use-out-is-predictions", "studies/tools/context_use",
      ["{w}/ev_a", "--labels", "a", "--task", "mt", "--data", "{w}/mt", "--out", "{w}/ev_a/predictions.jsonl"]),
    C("train-overwrite-folder-holding-contexts", "train",
      TRAIN[:-2] + ["--contexts", "{t}/run/ctx.jsonl", "--overwrite", "--out", "{t}/run"], setup=_ctx_in_folder),
    C("evaluate-out-inside-adapter-run", "evaluate",
      ["--adapter", "{w}/resume/run", "--limit", "3", "--threads", "1", "--out", "{w}/resume/run/ev"]),
    C("reproduce-out-inside-data", "reproduce", REPRO[:-2] + ["--task", "mt", "--data", "{w}/mt",
                                                                      "--out", "{w}/mt/study"]),
    # ---- 3. evaluate.py: no silent replacement; figure3 reads only finished evaluations
    C("evaluate-mt-over-complete-alignment-eval", "evaluate", EVAL[:-2] + ["--out", "{t}/ev"],
      setup=_copy_ev_real),
    C("figure3-interrupted-evaluation", "figure3", ["{t}/ev", "{w}/ev_a", "--out", "{t}/fig.png"],
      setup=_ev_interrupted),
    C("figure3-predictions-changed-after-completion", "figure3",
      ["{t}/ev", "{w}/ev_a", "--out", "{t}/fig.png"], setup=_ev_changed),
    C("context_use-interrupted-evaluation", "studies/tools/context_use",
      ["{t}/ev", "--labels", "a", "--out", "{t}/cu.md"], setup=_ev_interrupted),
    # ---- 4. one process per output folder
    C("train-resume-locked-run", "train",
      AL + ["--regime", "random", "--contexts", "{w}/resume/ctx.jsonl", "--model", "tiny", "--max-steps", "4",
            "--save-every", "2", "--threads", "1", "--resume", "--out", "{t}/run"],
      setup=_locked("train-run", "run", _copy_run)),
    C("evaluate-locked-folder", "evaluate", EVAL[:-2] + ["--overwrite", "--out", "{t}/ev"],
      setup=_locked("evaluation", "ev", _copy_ev_real)),
    # ---- 5. an early failure leaves nothing (so every retry is accepted)
    C("train-unknown-model-leaves-nothing", "train",
      AL + ["--model", "nosuchmodel", "--regime", "contrastive", "--max-steps", "2", "--threads", "1",
            "--out", "{t}/r"]),
    C("train-max-len-8-leaves-nothing", "train", AL + TR + ["--regime", "contrastive", "--max-len", "8",
                                                                       "--out", "{t}/r"]),
    C("train-unknown-model-empty-folder-stays-empty", "train",
      AL + ["--model", "nosuchmodel", "--regime", "contrastive", "--threads", "1", "--out", "{t}/k"],
      setup=_empty_folder),
    C("evaluate-unknown-model-leaves-nothing", "evaluate", EVAL[:-2] + ["--model", "nosuchmodel",
                                                                                  "--out", "{t}/ev"]),
    # ---- 6. the progress of an interrupted paraphrase.py is not taken as a whole file
    C("sample_contexts-partial-paraphrases", "sample_contexts", SC + ["--paraphrases", "{t}/p.jsonl"],
      setup=_partial_para),
    C("train-partial-paraphrases", "train", AL + TR + ["--regime", "contrastive", "--paraphrases",
                                                                 "{t}/p.jsonl", "--out", "{t}/run"],
      setup=_partial_para),
    # ---- 10. smaller: bad rows of paraphrase / contexts files, data the scripts cannot use, contradictory flags
    C("sample_contexts-paraphrase-integer-labels", "sample_contexts",
      SC + ["--paraphrases", "{w}/para_intlabel.jsonl"]),
    C("train-paraphrase-label-with-newline", "train",
      AL + TR + ["--regime", "contrastive", "--paraphrases", "{w}/para_nl_label.jsonl", "--out", "{t}/run"]),
    C("evaluate-paraphrase-empty", "evaluate", EVAL + ["--paraphrases", "{w}/para_mt_empty.jsonl"]),
    C("train-contexts-duplicate-epoch-target", "train", TRAIN + ["--contexts", "{w}/ctx_dup.jsonl"]),
    C("train-contexts-target-in-own-context", "train", TRAIN + ["--contexts", "{w}/ctx_self.jsonl"]),
    C("sample_contexts-mtop-id-ends-copy", "sample_contexts",
      ["--task", "semparse", "--data", "{w}/mtop_hash", "--out", "{t}/c.jsonl"]),
    C("train-mtop-id-ends-copy", "train", ["--task", "semparse", "--data", "{w}/mtop_hash"] + TR +
      ["--out", "{t}/run"]),
    C("evaluate-mtop-id-ends-paraphrase-suffix", "evaluate",
      ["--model", "tiny", "--task", "semparse", "--data", "{w}/mtop_hashp", "--threads", "1", "--out", "{t}/ev"]),
    C("paraphrase-mtop-id-ends-copy", "paraphrase",
      ["--task", "semparse", "--data", "{w}/mtop_hash", "--out", "{t}/p.jsonl"]),
    C("sample_contexts-mtop-malformed-logical-form", "sample_contexts",
      ["--task", "semparse", "--data", "{w}/mtop_badlf", "--out", "{t}/c.jsonl"]),
    C("evaluate-mtop-malformed-logical-form", "evaluate",
      ["--model", "tiny", "--task", "semparse", "--data", "{w}/mtop_badlf", "--threads", "1", "--out", "{t}/ev"]),
    C("sample_contexts-mtop-empty-question", "sample_contexts",
      ["--task", "semparse", "--data", "{w}/mtop_emptyq", "--out", "{t}/c.jsonl"]),
    C("sample_contexts-sql-gold-cannot-run", "sample_contexts",
      ["--task", "sql", "--data", "{w}/bird_badgold", "--regime", "random", "--out", "{t}/c.jsonl"]),
    C("evaluate-sql-gold-cannot-run", "evaluate",
      ["--model", "tiny", "--task", "sql", "--data", "{w}/bird_badgold", "--threads", "1", "--out", "{t}/ev"]),
    C("evaluate-context-types-twice", "evaluate", EVAL + ["--context-types", "zero,zero,random"]),
    C("evaluate-full-run-with-other-model", "evaluate",
      ["--adapter", "{w}/fullrun", "--model", "scratch", "--limit", "3", "--threads", "1", "--out", "{t}/ev"]),
    C("figure3-table-is-out", "figure3", FIG[:-2] + ["--out", "{t}/fig.png", "--table", "{t}/fig.png"]),
    C("figure3-out-md-is-default-table", "figure3", FIG[:-2] + ["--out", "{t}/fig.md"]),
    C("context_use-threshold-nan", "studies/tools/context_use",
      ["{w}/ev_a", "--labels", "a", "--task", "mt", "--data", "{w}/mt", "--threshold", "nan", "--out", "{t}/cu.md"]),
    C("context_use-threshold-negative", "studies/tools/context_use",
      ["{w}/ev_a", "--labels", "a", "--task", "mt", "--data", "{w}/mt", "--threshold", "-1", "--out", "{t}/cu.md"]),
    C("theory_sim-lr-diverges", "theory_sim",
      ["--steps", "50", "--n-test", "50", "--sweep", "none", "--lr", "1e6", "--no-plot", "--out", "{t}/ts"]),
    C("theory_sim-sweep-repeated", "theory_sim", TS + ["--sweep", "0.5,0.5,0.5"]),
    C("sweep-rhos-repeated", "sweep", ["--budget", "smoke", "--rhos", "0.5,0.5,0.5", "--no-plot",
                                                  "--out", "{t}/sw"]),
    C("sweep-regimes-repeated", "sweep", ["--budget", "smoke", "--regimes", "random,random", "--no-plot",
                                                     "--out", "{t}/sw"]),
    C("sweep-task-seed-negative", "sweep", ["--budget", "smoke", "--task-seed", "-1", "--no-plot",
                                                       "--out", "{t}/sw"]),
    C("paraphrase-limit-0", "paraphrase", PARA + ["--limit", "0"]),
    C("reproduce-unknown-model-writes-nothing", "reproduce", REPRO + ["--model", "nosuchmodel"]),
    C("reproduce-offline-hub-writes-nothing", "reproduce",
      REPRO[:-2] + ["--task", "mt", "--data", "hub:europarl", "--out", "{t}/study"]),
]

# ==== honest comparisons, SQL paths, bounded memory, machine errors (kept apart from CASES above, which
# the sections before extend) ====
def _copy_ev(name, rows=None, summary=None):
    """Setup: {t}/<name> = the real evaluation folder ev_real as committed results/*/eval/ folders are (no
    cc_output.json), with its rows and summary changed by rows(list) / summary(dict) and a VALID sidecar
    (the folder is refused for the change, not for a stale sha256)."""
    def setup(w, t):
        from contrastive_context import common
        d = f"{t}/{name}"
        shutil.copytree(f"{w}/ev_real", d)
        os.remove(f"{d}/cc_output.json")
        if rows is not None:
            path = f"{d}/predictions.jsonl"
            meta = {k: v for k, v in common.read_meta(path).items() if k not in ("rows", "sha256")}
            common.write_jsonl_atomic(path, rows(common.read_jsonl(path)), meta=meta)
        if summary is not None:
            s = json.load(open(f"{d}/summary.json"))
            summary(s)
            json.dump(s, open(f"{d}/summary.json", "w"))
    return setup


def _setups(*fns):
    def setup(w, t):
        for fn in fns:
            fn(w, t)
    return setup


def _ev_stale_sidecar(w, t):
    """A committed-style evaluation folder whose predictions changed after its sidecar was written."""
    _copy_ev("ev")(w, t)
    rows = [json.loads(l) for l in open(f"{t}/ev/predictions.jsonl")]
    rows[1]["score"] = 100.0 - rows[1]["score"]
    with open(f"{t}/ev/predictions.jsonl", "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))


def _set(i, **change):
    return lambda rows: [dict(r, **change) if n == i else r for n, r in enumerate(rows)]


def _drop(i, field):
    return lambda rows: [{k: v for k, v in r.items() if k != field or n != i} for n, r in enumerate(rows)]


def _no_test_fp(s):
    s.pop("test_fp", None)


def _ctx_no_sidecar(w, t):
    shutil.copy(f"{w}/ctx_al.jsonl", f"{t}/c.jsonl")


def _ctx_no_task_fp(w, t):
    _ctx_no_sidecar(w, t)
    meta = json.load(open(f"{w}/ctx_al.jsonl.meta.json"))
    del meta["task_fp"]
    json.dump(meta, open(f"{t}/c.jsonl.meta.json", "w"))


def _bird_with_hash(w, t):
    """A BIRD folder whose path holds '#': SQLite's file: URI ended the path there (and created x read-write)."""
    import sqlite3
    d = f"{t}/x#my/bird"
    os.makedirs(f"{d}/databases/shop")
    conn = sqlite3.connect(f"{d}/databases/shop/shop.sqlite")
    conn.execute("CREATE TABLE customer (id INTEGER PRIMARY KEY, name TEXT, city TEXT)")
    conn.executemany("INSERT INTO customer VALUES (?, ?, ?)",
                     [(i, f"n{i}", ["Paris", "Rome", "Berlin"][i % 3]) for i in range(12)])
    conn.commit()
    conn.close()
    q = [{"db_id": "shop", "question": f"How many customers live in {c}?",
          "SQL": f"SELECT COUNT(*) FROM customer WHERE city = '{c}'"} for c in ["Paris", "Rome", "Berlin"] * 4]
    json.dump(q, open(f"{d}/train.json", "w"))
    json.dump(q[:3], open(f"{d}/dev.json", "w"))


def _mt_long_line(w, t):
    """MT data with ONE line of 300,000 words (2.6 MB) among ordinary sentences."""
    pairs = _pairs(60)
    words = " ".join(f"{_SUBJ[i % 8].split()[-1].lower()}{i % 997}" for i in range(300_000))
    pairs[17] = (words, "Ein sehr langer Satz.")
    _write_mt(f"{t}/mt", pairs, _pairs(6, offset=3))


def _symlink_to_run(w, t):
    _copy_run(w, t)
    os.symlink("run", f"{t}/link")


def _broken_symlink(w, t):
    os.symlink("nowhere", f"{t}/link")


def _edit_run(edit):
    def setup(w, t):
        _copy_run(w, t)
        edit(f"{t}/run")
    return setup


def _config_model_int(run):
    cfg = json.load(open(f"{run}/config.json"))
    cfg["model"] = 123
    json.dump(cfg, open(f"{run}/config.json", "w"))


def _config_with_gone_flag(run):
    """A run config naming a flag train.py no longer has (as a config.json of an older train.py would)."""
    cfg = json.load(open(f"{run}/config.json"))
    cfg["cpu_threads"] = 2
    json.dump(cfg, open(f"{run}/config.json", "w"))


def _final_state(value):
    """A run with final/ (weights and trainer_state.json, as train.py saves it) whose trainer_state.json is `value`."""
    def edit(run):
        shutil.copytree(f"{run}/checkpoint-2", f"{run}/final")
        for f in os.listdir(f"{run}/final"):
            if f.endswith(".pt"):
                os.remove(f"{run}/final/{f}")
        json.dump(value, open(f"{run}/final/trainer_state.json", "w"))
    return edit


def _truncate_trainer_state(run):
    p = f"{run}/checkpoint-2/trainer_state.pt"
    data = open(p, "rb").read()
    open(p, "wb").write(data[: len(data) // 2])


def _old_checkpoint_log_row_without_step(run):
    """A checkpoint made before checkpoints held the log (the log is read from train_log.jsonl on resume),
    and a log row without "step"."""
    import torch
    p = f"{run}/checkpoint-2/trainer_state.pt"
    state = torch.load(p, weights_only=False)
    del state["log_rows"]
    torch.save(state, p)
    with open(f"{run}/train_log.jsonl", "a") as f:
        f.write('{"loss": 1.0}\n')


RESUME = AL + ["--regime", "random", "--contexts", "{t}/ctx.jsonl", "--model", "tiny", "--max-steps", "4",
               "--save-every", "2", "--threads", "1", "--resume", "--out", "{t}/run"]


def _resumable(edit):
    """Setup: a copy of resume/run with its own copy of the contexts file it trained on (an earlier case,
    train-resume-changed-contexts, changes resume/ctx.jsonl; ctx_al.jsonl is the same file, made by the
    same command), then edit(run)."""
    def setup(w, t):
        _copy_run(w, t)
        for suffix in ("", ".meta.json"):
            shutil.copy(f"{w}/ctx_al.jsonl{suffix}", f"{t}/ctx.jsonl{suffix}")
        cfg = json.load(open(f"{t}/run/config.json"))
        cfg["contexts"] = cfg["contexts_source"] = f"{t}/ctx.jsonl"
        json.dump(cfg, open(f"{t}/run/config.json", "w"))
        edit(f"{t}/run")
    return setup
EV_AL = ["--task", "alignment", "--n-train", "50", "--n-test", "20"]
SLOW = pytest.mark.slow

CASES += [
    # ---- 8. figure3 reads only what it can compare honestly; contexts files name their data set; probes
    C("figure3-predictions-differ-from-sidecar", "figure3", ["{t}/ev", "{w}/ev_real", "--out", "{t}/f.png"],
      setup=_ev_stale_sidecar, match="changed since it was written"),
    C("figure3-two-test-sets-same-ids", "figure3", ["{t}/a", "{t}/b", "--out", "{t}/f.png"],
      setup=_setups(_copy_ev("a", summary=_no_test_fp),
                    _copy_ev("b", rows=lambda rows: [dict(r, reference=r["reference"] + "q") for r in rows],
                             summary=_no_test_fp)), match="another reference"),
    C("figure3-test-fingerprints-differ", "figure3", ["{t}/a", "{t}/b", "--out", "{t}/f.png"],
      setup=_setups(_copy_ev("a"), _copy_ev("b", summary=lambda s: s.update(test_fp="0123456789ab"))),
      match="differ in their test set"),
    C("figure3-chrf-beside-exact-match", "figure3", ["{t}/a", "{t}/b", "--out", "{t}/f.png"],
      setup=_setups(_copy_ev("a", summary=lambda s: s.update(metric="chrf")),
                    _copy_ev("b", summary=lambda s: s.update(metric="exact_match"))), match="differ in their metric"),
    C("figure3-empty-predictions", "figure3", ["{t}/a", "{w}/ev_real", "--out", "{t}/f.png"],
      setup=_copy_ev("a", rows=lambda rows: []), match="holds no predictions"),
    C("figure3-unknown-context-type", "figure3", ["{t}/a", "{w}/ev_real", "--out", "{t}/f.png"],
      setup=_copy_ev("a", rows=_set(2, context_type="random+bogus")), match="unknown context type"),
    C("figure3-same-instance-twice", "figure3", ["{t}/a", "{w}/ev_real", "--out", "{t}/f.png"],
      setup=_copy_ev("a", rows=lambda rows: rows + rows[:1]), match="both hold test input"),
    C("figure3-random+counterfactual-is-a-context-type", "figure3",
      ["{w}/ev_real", "{t}/a", "--ref", "a", "--out", "{t}/f.png"], kind="ok", setup=_copy_ev("a"),
      allow=r"/f\.(png|md)$"),
    C("context_use-predictions-differ-from-sidecar", "studies/tools/context_use",
      ["{t}/ev", "--labels", "a"] + EV_AL + ["--out", "{t}/cu.md"], setup=_ev_stale_sidecar,
      match="changed since it was written"),
    C("train-contexts-without-sidecar-other-data-set", "train",
      AL + ["--task-seed", "3"] + TR + ["--regime", "random", "--contexts", "{t}/c.jsonl", "--out", "{t}/run"],
      setup=_ctx_no_sidecar, match="does not say which data set"),
    C("train-contexts-sidecar-without-task-fp", "train",
      AL + ["--task-seed", "3"] + TR + ["--regime", "random", "--contexts", "{t}/c.jsonl", "--out", "{t}/run"],
      setup=_ctx_no_task_fp, match="names no task or task_fp"),
    # ---- 9. SQL: a --data path with '#' is read in place, read-only; nothing is created outside the outputs
    C("paraphrase-sql-data-path-with-hash", "paraphrase",
      ["--task", "sql", "--data", "{t}/x#my/bird", "--backend", "perturb", "--n", "2", "--out", "{t}/p.jsonl"],
      kind="ok", setup=_bird_with_hash, allow=r"/p\.jsonl(\.meta\.json)?$"),
    # ---- 11. a 300k-word line: bounded memory (was 20 GB and the OOM killer)
    C("sample_contexts-300k-word-line", "sample_contexts",
      ["--task", "mt", "--data", "{t}/mt", "--regime", "contrastive", "--out", "{t}/c.jsonl"], kind="ok",
      mode="subproc", setup=_mt_long_line, allow=r"/c\.jsonl(\.meta\.json)?$", timeout=90, marks=SLOW),
    # ---- 12. one error line instead of a traceback
    C("sample_contexts-file-size-limit", "sample_contexts", SC, mode="subproc",
      limits={"fsize": 4096}, match="File too large.*ulimit -f", marks=SLOW),
    C("train-file-size-limit", "train", TRAIN, mode="subproc", limits={"fsize": 4096},
      match="File too large.*ulimit -f", marks=SLOW),
    C("sample_contexts-out-in-proc", "sample_contexts", SC[:-2] + ["--out", "/proc/cc-x.jsonl"],
      match="/proc"),
    C("train-out-in-proc", "train", TRAIN[:-2] + ["--out", "/proc/cc-x"], match="/proc"),
    C("train-overwrite-out-symlink-to-run", "train", TRAIN[:-2] + ["--overwrite", "--out", "{t}/link"],
      kind="clean", setup=_symlink_to_run, marks=SLOW),
    C("train-out-broken-symlink", "train", TRAIN[:-2] + ["--overwrite", "--out", "{t}/link"],
      setup=_broken_symlink, match="broken symbolic link"),
    C("context_use-row-without-id", "studies/tools/context_use",
      ["{t}/a", "--labels", "a"] + EV_AL + ["--out", "{t}/cu.md"], setup=_copy_ev("a", rows=_drop(3, "id")),
      match="id"),
    C("context_use-prediction-not-a-string", "studies/tools/context_use",
      ["{t}/a", "--labels", "a"] + EV_AL + ["--out", "{t}/cu.md"], setup=_copy_ev("a", rows=_set(3, prediction=5)),
      match="'prediction' must be a string"),
    C("evaluate-run-config-model-int", "evaluate",
      ["--adapter", "{t}/run/checkpoint-2", "--limit", "3", "--threads", "1", "--out", "{t}/ev"],
      setup=_edit_run(_config_model_int), match='"model" must be a model name'),
    C("probes-run-config-model-int", "probes", ["--run", "{t}/run"] + PROBES[2:],
      setup=_edit_run(_config_model_int), match='"model" must be a model name'),
    C("probes-trainer-state-json-list", "probes", ["--run", "{t}/run"] + PROBES[2:],
      setup=_edit_run(_final_state([1, 2])), match="trainer_state.json: expected a JSON object"),
    C("probes-trainer-state-json-step-abc", "probes", ["--run", "{t}/run"] + PROBES[2:],
      setup=_edit_run(_final_state({"step": "abc"})), match='"step" must be an integer'),
    C("train-resume-truncated-trainer-state", "train", RESUME,
      setup=_resumable(_truncate_trainer_state), match="unreadable trainer state"),
    C("train-resume-log-row-without-step", "train", RESUME,
      setup=_resumable(_old_checkpoint_log_row_without_step), match="train_log.jsonl:\\d+: missing field 'step'"),
    C("sweep-eval-seed-negative", "sweep", ["--budget", "smoke", "--eval-seed", "-1", "--no-plot",
                                                       "--out", "{t}/sw"], match="--eval-seed"),
    C("sweep-k-larger-than-pool", "sweep", ["--budget", "smoke", "--k", "64", "--n-train", "10",
                                                       "--no-plot", "--out", "{t}/sw"], match="--k 64"),
    C("train-model-too-big-for-6gb", "train",
      AL + ["--model", "scratch:64x8192x64", "--max-steps", "2", "--threads", "1", "--regime", "random",
            "--out", "{t}/r"], mode="subproc", match="out of memory", timeout=90, marks=SLOW),
    C("train-n-train-10M-out-of-memory", "train",
      ["--task", "alignment", "--n-train", "10000000"] + TR + ["--regime", "random", "--out", "{t}/r"],
      mode="subproc", limits={"mem": 5 << 29}, match="out of memory", timeout=150, marks=SLOW),
    C("sweep-jobs-2-sigterm", "sweep", ["--budget", "smoke", "--steps", "100000", "--no-plot", "--jobs", "2",
                                                 "--out", "{t}/sw"],
      kind="signal", mode="signal", wait_for=r"to train", after=4.0, marks=SLOW),
    # ==== train.py --report-to and --config ====
    C("train-report-to-bogus", "train", TRAIN + ["--report-to", "bogus"], match="--report-to"),
    C("train-config-missing", "train", ["--config", "missing.json", "--out", "{t}/r"],
      match=r"--config missing\.json: file not found"),
    C("train-config-not-a-run-config", "train", ["--config", "{w}/ev_real/summary.json", "--out", "{t}/r"],
      match=r"summary\.json: not a run config of train\.py"),
    C("train-config-hf-model-config", "train", ["--config", "{t}/hf/config.json", "--out", "{t}/r"],
      setup=_hf_folder, match=r"hf/config\.json: not a run config of train\.py \(it has no \"model\"\)"),
    C("train-config-names-a-gone-flag", "train", ["--config", "{t}/run/config.json", "--out", "{t}/r"],
      setup=_edit_run(_config_with_gone_flag), match=r"run/config\.json: \"cpu_threads\" is not a flag of train\.py"),
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
        code, out, err = run_subprocess(case["script"], argv, t, timeout=case.get("timeout", 30),
                                        limits=case.get("limits"))
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
    if case["kind"] == "ok":  # the input must be accepted, and nothing but the outputs (`allow`) appear
        assert code == 0 and not error_lines(err), report
        changes = diff_snapshots(before, after, case["allow"])
        assert not changes, "disk changed beyond the outputs:\n" + "\n".join(changes[:20]) + "\n" + report
        return
    assert code == 2, report
    assert len(error_lines(err)) == 1, report
    if case.get("match"):  # the error the case is about, not an earlier one
        assert re.search(case["match"], error_lines(err)[0]), report
    changes = diff_snapshots(before, after, case["allow"])
    assert not changes, "disk changed:\n" + "\n".join(changes[:20]) + "\n" + report
