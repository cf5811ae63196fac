"""Output folders: who owns them, who may write into them, and the rule that an output is never an input.

  * an output folder is this program's only when it holds the marker `cc_output.json` (written only
    by `OutputDir.start`): a non-empty folder without it is never written into or deleted, not even
    with --overwrite; train.py and evaluate.py lock their folder (`.cc_lock`, fcntl.flock) while they
    run; an early failure leaves no trace in a folder that was missing or empty (`claim_output_dir`);
  * a reader checks that a folder is a finished output of the kind it expects (`check_complete`);
  * an output is never one of the script's own inputs, nor inside an input folder (`check_out_not_input`).
"""
import contextlib
import json
import os
import shutil

from .common import UserError, check_output_path, file_sha256, write_json_atomic
from .common import _makedirs_tracked, _remove_empty, _umask  # the atomic-write helpers, shared


# ----------------------------------------------------------------------------- outputs are not inputs
def _inside(path, folder):
    """True when real path `path` lies strictly inside real folder `folder`."""
    return path != folder and os.path.commonpath([path, folder]) == folder


def check_out_not_input(out, inputs, is_dir=False, what="--out", may_hold_inputs=False):
    """Refuse, BEFORE any work, an output that would replace, or write into, one of the script's own
    inputs: `out` (a file, or with is_dir a folder) is the same file as an input (resolved real path,
    or the same inode through a hard link), either one is the other's `.meta.json` sidecar, `out`
    lies inside an input folder (the task data, a run, an evaluation folder, a model folder), or the
    output folder holds an input (it may be emptied by --overwrite; `may_hold_inputs` for a folder
    that is never emptied, e.g. a reproduce.py study). `inputs` may hold None, "" and
    names that are not paths (a hub model name, "hub:..." data): only paths that exist are compared.
    Reads only; creates nothing."""
    if out is None or os.fspath(out) == "":
        return
    o = os.path.realpath(os.fspath(out))
    outs = [o] if is_dir else [o, o + ".meta.json"]
    for inp in inputs:
        if inp is None or not isinstance(inp, (str, os.PathLike)) or os.fspath(inp) == "" \
                or not os.path.lexists(inp):
            continue
        i = os.path.realpath(os.fspath(inp))
        in_dir = os.path.isdir(i)
        ins = [i] if in_dir else [i, i + ".meta.json"]
        for a in outs:
            for b in ins:
                same = a == b
                if not same and os.path.exists(a) and os.path.exists(b):
                    try:
                        same = os.path.samefile(a, b)
                    except OSError:
                        pass
                if same:
                    raise UserError(f"{what} {out} is (or is the sidecar of) the input {inp}; refusing to replace "
                                    f"an input with an output")
        if in_dir and _inside(o, i):
            raise UserError(f"{what} {out} lies inside the input folder {inp}; refusing to write into an input")
        if is_dir and not may_hold_inputs and _inside(i, o):
            raise UserError(f"{what} {out} holds the input {inp}; choose an output folder that holds none of the "
                            f"inputs")


# ----------------------------------------------------------------------------- output folders: ownership, lock
OWNER_FILE = "cc_output.json"   # the ownership marker: only this repository's scripts write it
LOCK_FILE = ".cc_lock"          # the per-folder lock (fcntl.flock), removed when released
OWNER_FORMAT = 1
OWNER_NOUNS = {"train-run": "a run", "evaluation": "an evaluation folder", "study": "a reproduce.py study",
               "sweep": "a sweep folder"}


def read_owner(folder):
    """The ownership marker `<folder>/cc_output.json` as a dict with a string "kind", or None: a folder
    without one was not made by this repository (or was made before markers existed; readers accept
    such folders as before, only writing into or deleting them needs the marker). A marker that is a
    symbolic link or not a JSON object with a "kind" counts as none."""
    p = os.path.join(os.fspath(folder), OWNER_FILE)
    if os.path.islink(p) or not os.path.isfile(p):
        return None
    try:
        with open(p, encoding="utf-8") as f:
            m = json.load(f)
    except (OSError, ValueError, RecursionError):
        return None
    return m if isinstance(m, dict) and isinstance(m.get("kind"), str) else None


def _entries(folder):
    """The names in `folder` other than its lock file and a temporary file of its marker (a folder
    holding only those, e.g. left by a process killed while claiming it, counts as empty)."""
    try:
        return [n for n in os.listdir(folder)
                if n != LOCK_FILE and not (n.startswith(f".{OWNER_FILE}.") and n.endswith(".tmp"))]
    except FileNotFoundError:
        return []


def _lock_holder(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown"
    except OSError:
        return "unknown"


class OutputDir:
    """An output folder claimed by this process: made by `claim_output_dir`, used as a context manager.

    Ownership: the folder is ours when it holds `cc_output.json` (written by `start()`, never by
    anything but this code) of the same kind; a non-empty folder without it is never written into
    or deleted, whatever the flags (`legacy(folder)` may accept folders made by this code before
    markers existed: reproduce.py studies and sweeps, recognised by their own manifests).
    Lock: `<folder>/.cc_lock`, held with fcntl.flock(LOCK_EX|LOCK_NB) from the claim until the
    `with` block ends; a second process gets ONE error line naming the lock file and the holder's
    pid. The kernel drops a flock when its process dies (even by SIGKILL), so a lock can never be
    stale: a lock file left by a killed process is simply locked again by the next one (and a
    folder holding only a lock file counts as empty). On NFS without lock support, flock may not
    exclude processes on other hosts.
    Failure: when the block ends with an exception and the folder was missing or empty at the claim
    (and is locked by this process), whatever was put into it is removed (and the folder too if the
    claim made it), unless `keep()` was called (e.g. once training has started: the folder, with its
    marker, is then what --resume or --overwrite continue or replace). A folder that held something
    is never cleaned up this way.
    Deletion (--overwrite) happens in `start()`, i.e. only after the caller validated everything it
    could, and removes everything in the folder but the lock file."""

    def __init__(self, path, kind, program, overwrite=False, resume=False, reuse=False, legacy=None,
                 what="--out"):
        self.path = check_output_path(path, is_dir=True, what=what)
        self.shown, self.kind, self.program, self.what = os.fspath(path), kind, program, what
        self.overwrite, self.resume, self.reuse, self.legacy = overwrite, resume, reuse, legacy
        self.fresh, self.owner, self.adopted = True, None, False
        self._fd, self._created, self._kept, self._started = None, [], False, False

    # ---- checks (read only)
    def check(self, flags=True):
        """Refuse a folder we must not write into; sets .fresh (missing or empty) and .owner (its marker).
        flags=False: leave out the --resume/--overwrite question (asked once the lock is held, so that a
        folder in use gets the lock error, not advice to pass --resume)."""
        ap, noun = self.path, OWNER_NOUNS.get(self.kind, f"a {self.kind} folder")
        self.fresh = not os.path.isdir(ap) or not _entries(ap)
        self.owner = None if self.fresh else read_owner(ap)
        if self.fresh:
            return self
        if self.owner is None:
            if self.legacy is not None and self.legacy(ap):
                self.adopted = True  # made by this code before markers existed: start() writes the marker
            else:
                raise UserError(f"{self.shown} is a non-empty folder that is not {noun} of this program "
                                f"(no {OWNER_FILE}); refusing to use or delete it")
        elif self.owner["kind"] != self.kind:
            raise UserError(f"{self.shown} is {OWNER_NOUNS.get(self.owner['kind'], 'another output')} "
                            f"(its {OWNER_FILE} says '{self.owner['kind']}'), not {noun}; refusing to use or "
                            f"delete it")
        if flags and not (self.overwrite or self.resume or self.reuse):
            raise UserError(f"{self.shown} already holds {noun}; pass --resume to continue it or --overwrite to "
                            f"replace it")
        return self

    # ---- lock
    def acquire(self):
        """Take the folder's lock (making the folder if needed), then check it again under the lock."""
        import fcntl
        self._created = _makedirs_tracked(self.path)
        lock = os.path.join(self.path, LOCK_FILE)
        try:
            for _ in range(50):
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666 & ~_umask())
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except (BlockingIOError, PermissionError):
                    holder = _lock_holder(fd)
                    os.close(fd)
                    raise UserError(f"{self.shown} is in use by another process (lock {lock} held by {holder}); "
                                    f"wait for it to finish or use another {self.what}") from None
                try:  # the holder we waited for may have removed the file: then lock the new one
                    st, mine = os.stat(lock), os.fstat(fd)
                    if (st.st_dev, st.st_ino) != (mine.st_dev, mine.st_ino):
                        raise FileNotFoundError(lock)
                except FileNotFoundError:
                    os.close(fd)
                    continue
                os.ftruncate(fd, 0)
                os.write(fd, f"pid {os.getpid()} on {_hostname()} ({self.program})\n".encode("utf-8"))
                self._fd = fd
                break
            else:
                raise UserError(f"could not lock {lock}")
            self.check()
        except BaseException:
            self.release(failed=True)
            raise
        return self

    # ---- writing
    def start(self):
        """Make the folder ready for this process's output: with --overwrite (on a folder that held
        something) empty it, all but the lock; write the marker. Call after validating the inputs."""
        if self._started:
            return self.path
        if self.overwrite and not self.fresh:
            for name in _entries(self.path):
                p = os.path.join(self.path, name)
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p)
                else:
                    os.remove(p)
        if not os.path.isdir(self.path):
            self._created += _makedirs_tracked(self.path)
        owner = read_owner(self.path)
        if owner is None or owner.get("kind") != self.kind or "complete" in owner:
            self._write_owner()
        self._started = True
        return self.path

    def _write_owner(self, **extra):
        write_json_atomic(os.path.join(self.path, OWNER_FILE),
                          {"kind": self.kind, "program": self.program, "format": OWNER_FORMAT,
                           "about": f"written by {self.program}: this folder is its output and may be replaced "
                                    f"by it (--overwrite); other folders are never deleted", **extra})

    def keep(self):
        """From now on a failure leaves the folder (with its marker) for --resume / --overwrite."""
        self._kept = True

    def complete(self, files, **info):
        """Record, LAST, that `files` (names in the folder) form one finished output: the marker gets
        {"complete": {"files": {name: sha256}, **info}}. Readers check it with `check_complete`."""
        self.start()
        digests = {f: file_sha256(os.path.join(self.path, f)) for f in files}
        self._write_owner(complete={"files": digests, **info})

    # ---- end
    def release(self, failed=False):
        # clean up only a folder we hold the lock of: never what another process is writing
        if failed and self.fresh and not self._kept and self._fd is not None and os.path.isdir(self.path):
            for name in _entries(self.path):
                p = os.path.join(self.path, name)
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p, ignore_errors=True)
                elif os.path.lexists(p):
                    with contextlib.suppress(OSError):
                        os.remove(p)
        if self._fd is not None:
            lock = os.path.join(self.path, LOCK_FILE)
            with contextlib.suppress(OSError):
                st, mine = os.stat(lock), os.fstat(self._fd)
                if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
                    os.remove(lock)  # while still holding it: a waiter then re-creates it (see acquire)
            os.close(self._fd)
            self._fd = None
        if failed and self.fresh and not self._kept:
            _remove_empty(self._created)  # (rmdir: a folder another process has filled meanwhile stays)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.release(failed=exc_type is not None)
        return False


def _hostname():
    import socket
    try:
        return socket.gethostname()
    except OSError:
        return "this host"


def claim_output_dir(path, kind, program, overwrite=False, resume=False, reuse=False, lock=True, legacy=None,
                     what="--out"):
    """Check that `path` may receive this program's output of `kind` and (with `lock`) lock it: an
    `OutputDir` to use as `with claim_output_dir(...) as out:` (call `out.start()` before writing).

    * missing or empty folder: fine (it is made for the lock and removed again on an early failure);
    * a folder of ours (its cc_output.json names `kind`): with `overwrite` it is emptied by `start()`;
      with `resume` or `reuse` kept as is; otherwise UserError (pass --resume or --overwrite);
    * any other non-empty folder (no marker, or another kind), even with --overwrite: UserError,
      nothing deleted or written;
    * locked by another process: UserError naming the lock."""
    out = OutputDir(path, kind, program, overwrite, resume, reuse, legacy, what).check(flags=not lock)
    return out.acquire() if lock else out


def check_complete(folder, kind, what="output folder"):
    """For readers: None for a folder without a marker (made before markers existed, or by hand:
    read as before); the marker's "complete" record when the folder is a finished output of `kind`
    whose recorded files are unchanged; else UserError (interrupted, still being written, or
    changed since)."""
    owner = read_owner(folder)
    if owner is None:
        return None
    if owner["kind"] != kind:
        raise UserError(f"{folder} is {OWNER_NOUNS.get(owner['kind'], 'another output')}, not the expected {what}")
    rec = owner.get("complete")
    if not isinstance(rec, dict) or not isinstance(rec.get("files"), dict):
        raise UserError(f"{folder} is not a complete {what} (interrupted or still running; run it again to finish)")
    for name, digest in rec["files"].items():
        p = os.path.join(folder, name)
        if not os.path.isfile(p) or file_sha256(p) != digest:
            raise UserError(f"{folder}/{name} changed since the {what} was completed (sha256 differs from "
                            f"{OWNER_FILE}); run it again")
    return rec
