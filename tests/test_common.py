import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from contrastive_context import common
from contrastive_context import outputs
from contrastive_context.common import UserError


def test_set_seed_accepts_huge_and_negative_seeds_deterministically():
    import random
    for s in (2**70, -5):
        common.set_seed(s)
        a = random.random()
        common.set_seed(s)
        assert random.random() == a
    assert common.seed32(7) == 7 and 0 <= common.seed32(2**70) < 2**32


@pytest.mark.parametrize("kind", ["dir", "empty", "under_file", "devnull", "fifo"])
def test_check_output_path_refuses(tmp_path, kind):
    f = tmp_path / "file.txt"
    f.write_text("keep")
    path = {"dir": str(tmp_path), "empty": "", "under_file": str(f / "out.jsonl"), "devnull": "/dev/null",
            "fifo": str(tmp_path / "fifo")}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(UserError):
        common.check_output_path(path)
    with pytest.raises(UserError):
        common.write_jsonl_atomic(path, [{"a": 1}])
    assert sorted(os.listdir(tmp_path)) == before and f.read_text() == "keep"


def test_atomic_write_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        common.write_jsonl_atomic(tmp_path / "a" / "b.jsonl", [{"x": 1}], meta={"kind": "t"})
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / "a" / "b.jsonl").st_mode)
    assert mode == 0o644
    assert common.is_complete(tmp_path / "a" / "b.jsonl")


def test_atomic_failure_leaves_nothing_not_even_parent_folders(tmp_path):
    with pytest.raises(RuntimeError):
        with common.atomic_path(tmp_path / "new" / "deeper" / "out.txt") as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    with pytest.raises(UserError):  # NaN refused, nothing written
        common.write_jsonl_atomic(tmp_path / "n.jsonl", [{"x": float("nan")}])
    assert os.listdir(tmp_path) == []


def test_sigterm_cleans_temporary_files_and_exits_143(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r})
        from contrastive_context.common import atomic_path, run_main
        def main():
            with atomic_path({str(tmp_path / 'out' / 'o.txt')!r}) as tmp:
                open(tmp, 'w').write('x')
                print('ready', flush=True)
                time.sleep(30)
        run_main(main)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 143 and err.count("error:") == 1 and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["s.py"]


def test_read_non_utf8_and_wrong_types(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_bytes(b'{"a": 1}\n{"b": "\xff\xfe"}\n')
    with pytest.raises(UserError, match=r"x.jsonl:2: not UTF-8"):
        common.read_jsonl(p)
    with pytest.raises(UserError, match="not UTF-8"):
        common.read_json(p)
    p.write_text('{"epoch": "abc", "context": []}\n')
    with pytest.raises(UserError, match=r"x.jsonl:1: field 'epoch' must be an integer"):
        common.read_jsonl(p, types={"epoch": int, "context": list})
    with pytest.raises(UserError, match="field 'context' must be a list"):
        common.require_types({"epoch": 1, "context": 3}, {"epoch": int, "context": list}, where="w")
    with pytest.raises(UserError, match="must be a number"):
        common.require_types({"s": float("nan")}, {"s": float})
    with pytest.raises(UserError, match="is a folder"):
        common.read_jsonl(tmp_path)


def test_sidecar_never_missing_and_partial_files_refused(tmp_path, monkeypatch):
    """A signal between the two renames no longer leaves a file without its sidecar
    (which passes for a hand-made file); a progress save ("complete": false) is refused by consumers."""
    p = str(tmp_path / "p.jsonl")
    common.write_jsonl_atomic(p, [{"i": 0}], meta={"kind": "k"})
    real_replace, calls = os.replace, []

    def replace_then_sigterm(a, b):  # fault injection: SIGTERM right after the first rename
        real_replace(a, b)
        calls.append(b)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
    monkeypatch.setattr(os, "replace", replace_then_sigterm)
    old = signal.signal(signal.SIGTERM, common._raise_terminated)
    try:
        with pytest.raises(common.Terminated):
            common.write_jsonl_atomic(p, [{"i": 0}, {"i": 1}], meta={"kind": "k", "complete": False})
    finally:
        signal.signal(signal.SIGTERM, old)
        common._TERMINATED.clear()
        monkeypatch.undo()
    assert calls == [p + ".meta.json", p]  # the sidecar first, then (signal held back) the data
    assert common.is_complete(p) and len(common.read_jsonl(p)) == 2
    with pytest.raises(UserError, match="interrupted run"):
        common.check_meta(p, "k")
    assert common.check_meta(p, "k", partial_ok=True)["complete"] is False
    assert sorted(os.listdir(tmp_path)) == ["p.jsonl", "p.jsonl.meta.json"]


def test_done_manifest_detects_partial_and_changed_outputs(tmp_path):
    out = tmp_path / "o.jsonl"
    assert not common.is_done(out)
    out.write_text("partial\n")
    assert not common.is_done(out)
    common.write_done(out, {"cmd": ["a", "b"]})
    assert common.is_done(out, {"cmd": ["a", "b"]})
    assert not common.is_done(out, {"cmd": ["a", "c"]})
    out.write_text("changed\n")
    assert not common.is_done(out, {"cmd": ["a", "b"]})
    d = tmp_path / "run"
    (d / "final").mkdir(parents=True)
    (d / "final" / "w.bin").write_bytes(b"123")
    common.write_done(d / "final")
    assert common.is_done(d / "final")
    (d / "final" / "w.bin").write_bytes(b"124")
    assert not common.is_done(d / "final")


def test_run_main_one_line(capsys):
    def bad():
        raise UserError("first\nsecond")
    with pytest.raises(SystemExit) as e:
        common.run_main(bad)
    assert e.value.code == 2
    assert capsys.readouterr().err == "error: first second\n"



def test_environment_errors_are_one_line_and_bugs_keep_their_traceback(capsys):
    """Errors of the machine (file-size limit, disk full, out of memory), also as torch
    and safetensors raise them, are one `error:` line with exit 2; any other exception still raises."""
    import errno
    cases = [(OSError(errno.EFBIG, "File too large"), "ulimit -f"),
             (OSError(errno.ENOSPC, "No space left on device"), "disk is full"),
             (MemoryError(), "out of memory"),
             (RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 268435456 bytes."), "out of memory"),
             (Exception("Error while serializing: I/O error: File too large (os error 27)"), "cannot write")]
    for exc, text in cases:
        def fail(exc=exc):
            raise exc
        with pytest.raises(SystemExit) as e:
            common.run_main(fail)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ") and text in err, err
    try:  # the cause of a re-raised error counts too
        try:
            raise MemoryError()
        except MemoryError as m:
            raise RuntimeError("while building the index") from m
    except RuntimeError as chained:
        assert "out of memory" in common.environment_error(chained)
    for bug in (KeyError("step"), ValueError("bad value"), OSError(errno.ENOENT, "No such file"), TypeError("x")):
        assert common.environment_error(bug) is None
        with pytest.raises(type(bug)):
            common.run_main(lambda bug=bug: (_ for _ in ()).throw(bug))


def test_outputs_where_the_os_refuses_files_are_one_line(tmp_path):
    """--out /proc/x.jsonl (mkstemp: ENOENT) or a folder under /proc, and a broken symbolic link: UserError."""
    with pytest.raises(UserError, match="cannot create files in /proc|/proc is not writable"):  # root | user
        common.write_jsonl_atomic("/proc/cc-test-x.jsonl", [{"a": 1}], meta={"kind": "t"})
    with pytest.raises(UserError, match="cannot make the folder /proc/cc-test-x|/proc is not writable"):
        outputs.claim_output_dir("/proc/cc-test-x", "train-run", "test")
    os.symlink(tmp_path / "nowhere", tmp_path / "link")
    with pytest.raises(UserError, match="broken symbolic link"):
        common.check_output_path(tmp_path / "link", is_dir=True)
    assert os.listdir(tmp_path) == ["link"]

def test_sigterm_swallowed_in_del_still_terminates_and_publishes_nothing(tmp_path, capsys):
    """A SIGTERM whose exception fires inside a __del__ is printed as "Exception ignored" by
    Python and the program goes on; run_main must still exit 143 without writing the output."""
    class Dying:
        def __del__(self):
            common._raise_terminated(signal.SIGTERM, None)  # what the handler does mid-__del__

    def main():
        with common.atomic_path(tmp_path / "out.txt") as tmp:
            with open(tmp, "w") as f:
                f.write("content")
            d = Dying()
            del d  # the Terminated raised here is swallowed by the interpreter
            with open(tmp, "a") as f:
                f.write(" more")  # ... and the work goes on

    with pytest.raises(SystemExit) as e:
        common.run_main(main)
    assert e.value.code == 143
    assert os.listdir(tmp_path) == []  # neither the output nor a temporary file
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 1
    common.run_main(lambda: None)  # the next run starts clean


def test_read_progress_reuses_only_an_intact_file_of_the_same_kind_and_config(tmp_path, capsys):
    p = str(tmp_path / "x.partial.jsonl")
    assert common.read_progress(p, "k", "c1", "progress") is None  # missing: silently nothing
    common.write_jsonl_atomic(p, [{"i": 0, "v": "a"}, {"i": 1, "v": "b"}], meta={"kind": "k", "config": "c1"})
    assert [r["v"] for r in common.read_progress(p, "k", "c1", "progress", required=("i", "v"))] == ["a", "b"]
    assert common.read_progress(p, "k", "c2", "progress") is None  # other settings
    assert common.read_progress(p, "other", "c1", "progress") is None  # other kind
    assert common.read_progress(p, "k", "c1", "progress", required=("missing",)) is None  # malformed rows
    with open(p, "a") as f:  # content changed after the sidecar was written: incomplete / stale
        f.write('{"i": 2, "v": "c"}\n')
    assert common.read_progress(p, "k", "c1", "progress") is None
    assert capsys.readouterr().out.count("note: not reusing") == 4
