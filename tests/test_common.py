import argparse
import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

import common
from common import UserError


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "abc", "", "1e400"])
def test_finite_float_rejects_non_finite_and_garbage(text):
    with pytest.raises(argparse.ArgumentTypeError):
        common.finite_float()(text)


def test_finite_float_bounds():
    f = common.finite_float(0, 1, hi_open=True)
    assert f("0") == 0.0 and f("0.5") == 0.5
    for bad in ("1", "1.5", "-0.1"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"\[0, 1\)"):
            f(bad)
    assert common.finite_float(lo=0, lo_open=True)("1e-9") == 1e-9
    with pytest.raises(argparse.ArgumentTypeError):
        common.finite_float(lo=0, lo_open=True)("0")


@pytest.mark.parametrize("text", ["1e12", "2.5", "nan", "x", "", "-1"])
def test_int_range_rejects(text):
    with pytest.raises(argparse.ArgumentTypeError):
        common.int_range(0, 10**6)(text)


def test_argparse_error_is_one_line_exit_2(capsys):
    p = argparse.ArgumentParser(prog="x")
    p.add_argument("--lr", type=common.finite_float(lo=0, lo_open=True))
    p.add_argument("--seed", type=common.SEED)
    for argv in (["--lr", "nan"], ["--seed", str(2**40)], ["--lr", "-1"]):
        with pytest.raises(SystemExit) as e:
            p.parse_args(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert sum("error:" in l for l in err.splitlines()) == 1
    assert common.int_range(0, 3)("3") == 3 and common.SEED("4294967295") == 2**32 - 1


def test_device_arg_and_threads():
    assert common.device_arg("cuda:1") == "cuda:1"
    with pytest.raises(argparse.ArgumentTypeError):
        common.device_arg("banana")
    with pytest.raises(argparse.ArgumentTypeError):
        common.THREADS("-1")
    with pytest.raises(UserError):
        common.set_threads(-1)


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
        from common import atomic_path, run_main
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


def test_prepare_run_dir_only_deletes_our_runs(tmp_path):
    thesis = tmp_path / "k" / "thesis.tex"
    thesis.parent.mkdir()
    thesis.write_text("years of work")
    with pytest.raises(UserError, match="not a run of this program"):
        common.prepare_run_dir(tmp_path / "k", overwrite=True)
    assert thesis.read_text() == "years of work"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    with pytest.raises(UserError, match="--overwrite"):
        common.prepare_run_dir(run)
    assert common.prepare_run_dir(run, resume=True) == str(run) and run.exists()
    common.prepare_run_dir(run, overwrite=True)
    assert not run.exists()
    assert common.prepare_run_dir(tmp_path / "fresh") == str(tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


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
