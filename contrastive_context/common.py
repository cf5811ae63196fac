"""Small shared helpers: clear errors, atomic writes, JSONL I/O, seeding, progress bars.

Every script in this repository follows the same conventions:
  * bad input raises `UserError`; `run_main` turns it into ONE line on stderr and exit code 2
    (Ctrl-C: exit 130; SIGTERM is turned into the exception `Terminated`: cleanups run, exit 143);
    errors of the machine (disk full, file-size limit, out of memory, an output where the OS refuses
    files, also as torch or safetensors report them: `environment_error`) are one line and exit 2 too;
  * command-line numbers use the argparse types of config.py (`finite_float`, `int_range`, `SEED`,
    `THREADS`): NaN, inf, garbage and out-of-range values are refused by argparse itself (usage + one
    `error:` line, exit 2) before any work starts;
  * outputs are written atomically (temp file in the same folder, then `os.replace`), so a
    crash never leaves a half-written, 0-byte or hidden temporary file behind; an output path
    that is a directory, a device/fifo, "" or lies under a regular file is refused up front
    (`check_output_path`); final files get the usual permissions (0666 & ~umask);
  * a finished piece of work is recognised by its sidecar `<path>.meta.json` (sha256 of the
    content, `is_complete`) or by a `<path>.done` manifest (`write_done` / `is_done`), never by
    the mere existence of a file;
  * output folders are owned (`cc_output.json`), locked while written, and never an input: outputs.py;
  * the configuration is printed at start; randomness is seeded (`set_seed`: seeds are
    integers in [0, 2**32-1] on the command line; larger or negative ints given in code are
    reduced deterministically).
"""
import contextlib
import errno
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import stat
import sys
import tempfile
import threading


class UserError(Exception):
    """Bad input from the user: printed as a one-line error, no traceback."""


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM (by `run_main`), so `finally`/cleanup code runs."""


def _one_line(msg):
    return " ".join(str(msg).split()) or "failed"


_TERMINATED = []  # the signal numbers received while run_main runs


def _raise_terminated(signum, frame):
    _TERMINATED.append(signum)
    raise Terminated(f"terminated by signal {signum}")


def check_terminated():
    """Raise Terminated if a SIGTERM arrived, even one whose exception Python swallowed: a signal
    handler that fires inside a __del__ or a weakref callback has its exception printed as
    "Exception ignored" and the program goes on. Called before every atomic rename and after
    main(), so a swallowed SIGTERM still publishes nothing and exits 143."""
    if _TERMINATED:
        raise Terminated(f"terminated by signal {_TERMINATED[0]}")


def _quiet_unraisable(unraisable, default=sys.__unraisablehook__):
    if isinstance(unraisable.exc_value, Terminated):
        return  # re-raised by check_terminated at the next atomic write or when main returns
    default(unraisable)


def run_main(main, argv=None):
    """Run `main()` (or `main(argv)` when argv is given).

    UserError -> `error: <message>` on stderr, exit 2; Ctrl-C -> exit 130; SIGTERM -> exit 143
    (turned into `Terminated` while main runs, so atomic writes clean their temporary files);
    an error of the machine rather than of the code (`environment_error`: disk full, file-size limit,
    permission denied, read-only file system, out of memory, also as raised by torch or safetensors)
    -> one line, exit 2, after the usual cleanups (atomic writes, output folders) have run."""
    old = None
    _TERMINATED.clear()
    if threading.current_thread() is threading.main_thread():
        old = signal.signal(signal.SIGTERM, _raise_terminated)
    old_hook, sys.unraisablehook = sys.unraisablehook, _quiet_unraisable
    try:
        main() if argv is None else main(argv)
        check_terminated()
    except UserError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Terminated:
        print("error: terminated (SIGTERM)", file=sys.stderr)
        sys.exit(143)
    except Exception as e:  # noqa: BLE001 - only errors of the machine are turned into one line
        msg = environment_error(e)
        if msg is None:
            raise
        print(f"error: {_one_line(msg)}", file=sys.stderr)
        sys.exit(2)
    finally:
        sys.unraisablehook = old_hook
        if old is not None:
            signal.signal(signal.SIGTERM, old)


ENV_ERRNOS = {errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT, errno.EPERM, errno.EISDIR, errno.ENOTDIR,
              errno.ENAMETOOLONG, errno.EFBIG, errno.ENOMEM, errno.EMFILE, errno.ENFILE}
_ENV_HINTS = {errno.EFBIG: "the file-size limit (ulimit -f) was reached",
              errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exhausted"}
# the same conditions as libraries report them in their own exceptions (torch: RuntimeError "[enforce fail ...]
# DefaultCPUAllocator: can't allocate memory", "PytorchStreamWriter failed writing file"; safetensors:
# SafetensorError "I/O error: File too large (os error 27)")
_ENV_MEMORY_TEXT = re.compile(r"can't allocate memory|cannot allocate memory|out of memory", re.I)
_ENV_DISK_TEXT = re.compile(r"file too large|no space left on device|disk quota exceeded|read-only file system|"
                            r"os error (27|28|30|122)\b|failed writing file", re.I)


def environment_error(exc):
    """The one-line message for an exception that comes from the machine, not from the code or the
    input: MemoryError, an OSError with an errno of ENV_ERRNOS, or a library's exception (torch,
    safetensors) whose text reports one of those conditions; looked for along the chain of causes.
    None for anything else (a bug: run_main lets its traceback through)."""
    seen, e = set(), exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, MemoryError):
            return f"out of memory ({type(e).__name__}{': ' + str(e)[:160] if str(e) else ''}); use smaller " \
                   f"settings or a machine with more memory"
        if isinstance(e, OSError) and e.errno in ENV_ERRNOS:
            where = f" ({e.filename})" if e.filename else ""
            hint = f": {_ENV_HINTS[e.errno]}" if e.errno in _ENV_HINTS else ""
            return f"{e.strerror or e}{where}{hint}"
        if not isinstance(e, OSError):
            text = " ".join(str(e).split())
            if _ENV_MEMORY_TEXT.search(text):
                return f"out of memory ({text[-200:]}); use smaller settings or a machine with more memory"
            if _ENV_DISK_TEXT.search(text):
                return f"cannot write: {text[-200:]} (disk full or the file-size limit, ulimit -f, reached?)"
        e = e.__cause__ or e.__context__
    return None


# ----------------------------------------------------------------------------- output paths
def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output_path(path, is_dir=False, what="output"):
    """Refuse, BEFORE any work, an output path we cannot or must not replace: "" , an existing
    directory (for a file) or file (for a folder), a special file (/dev/full, a fifo, a socket),
    a path under a regular file, or a folder we cannot write in. Creates nothing.
    Returns the absolute path."""
    if path is None or os.fspath(path) == "":
        raise UserError(f"{what} path is empty")
    path = os.fspath(path)
    ap = os.path.abspath(path)
    if os.path.lexists(ap):
        if not os.path.exists(ap):
            raise UserError(f"{what} {path} is a broken symbolic link (to {os.readlink(ap)}); remove it or give "
                            f"another path")
        st = os.stat(ap)
        if stat.S_ISDIR(st.st_mode) and not is_dir:
            raise UserError(f"{what} {path} is a directory, not a file")
        if stat.S_ISREG(st.st_mode) and is_dir:
            raise UserError(f"{what} {path} is a file, not a folder")
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            raise UserError(f"{what} {path} is a special file (device, fifo or socket); refusing to replace it")
    # the nearest existing ancestor must be a writable directory
    parent = os.path.dirname(ap)
    while not os.path.exists(parent):
        if os.path.lexists(parent):  # dangling symlink
            raise UserError(f"{what} {path}: {parent} is a broken link")
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UserError(f"{what} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: folder {parent} is not writable")
    return ap


def _makedirs_tracked(folder):
    """os.makedirs, returning the folders it created (deepest last) so they can be removed again."""
    created, cur = [], folder
    while not os.path.exists(cur):
        created.append(cur)
        cur = os.path.dirname(cur)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:  # e.g. under /proc: the OS refuses what check_output_path could not foresee
        _remove_empty(created[::-1])
        if e.errno in ENV_ERRNOS - {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR}:
            raise  # disk full, quota...: run_main reports it
        raise UserError(f"cannot make the folder {folder}: {e.strerror or e}") from None
    return created[::-1]


def _mkstemp_in(parent, prefix, is_dir=False):
    """tempfile.mkstemp / mkdtemp in `parent`: a folder where the OS refuses new files (/proc, /sys...) is
    a UserError naming it, whatever the errno (ENOENT under /proc)."""
    try:
        if is_dir:
            return tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=parent)
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=parent)
        os.close(fd)
        return tmp
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EMFILE, errno.ENFILE):
            raise  # the machine, not the path: run_main reports it
        raise UserError(f"cannot create files in {parent}: {e.strerror or e}") from None


def _remove_empty(folders):
    for d in reversed(folders):
        try:
            os.rmdir(d)
        except OSError:
            break


@contextlib.contextmanager
def atomic_path(path, is_dir=False):
    """Yield a temporary path next to `path`; on success rename it onto `path`.

    The output path is checked first (`check_output_path`). On an exception (including Ctrl-C
    and SIGTERM under `run_main`) the temporary file/folder and any parent folders created for
    it are removed and `path` is left untouched. The result gets mode 0666/0777 & ~umask."""
    ap = check_output_path(path, is_dir)
    parent = os.path.dirname(ap)
    created = _makedirs_tracked(parent)
    base = os.path.basename(ap)
    tmp = None
    try:
        if is_dir:
            tmp = _mkstemp_in(parent, f".{base}.", is_dir=True)
            os.chmod(tmp, 0o777 & ~_umask())
        else:
            tmp = _mkstemp_in(parent, f".{base}.")
            os.chmod(tmp, 0o666 & ~_umask())
        with _naming(path):
            yield tmp
        check_terminated()  # a SIGTERM swallowed while the content was made: publish nothing
        if is_dir and os.path.isdir(ap):
            old = tempfile.mkdtemp(prefix=f".{base}.", suffix=".old", dir=parent)
            os.rmdir(old)
            os.rename(ap, old)
            try:
                os.rename(tmp, ap)
            except BaseException:
                os.rename(old, ap)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, ap)
        tmp = None
    finally:
        if tmp is not None:
            if os.path.isdir(tmp) and not os.path.islink(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
            elif os.path.lexists(tmp):
                os.remove(tmp)
            _remove_empty(created)


@contextlib.contextmanager
def _naming(path):
    """An OSError without a file name raised while an output is written (a write() that hit the disk-full or
    file-size limit names none) gets the output's path, for run_main's one-line message."""
    try:
        yield
    except OSError as e:
        if e.filename is None:
            e.filename = os.fspath(path)
        raise


def write_text_atomic(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def write_json_atomic(path, obj):
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def dumps_row(row):
    return json.dumps(row, ensure_ascii=False, separators=(", ", ": "), allow_nan=False)


@contextlib.contextmanager
def signals_held():
    """Hold back SIGTERM and Ctrl-C (SIGINT) for the block: a signal that arrives meanwhile is
    recorded and handled as usual when the block ends (its handler runs then, or the signal is sent
    again for the default action). For the renames that publish several files as one. (Python runs
    signal handlers in the main thread whichever thread the OS delivered them to, so the handlers
    are swapped, not the thread's signal mask; outside the main thread this holds nothing back.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got = []
    sigs = [s for s in (signal.SIGTERM, signal.SIGINT) if signal.getsignal(s) is not None]  # None: set outside Python
    old = {s: signal.signal(s, lambda signum, frame: got.append(signum)) for s in sigs}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for signum in dict.fromkeys(got):
            h = old[signum]
            if callable(h):
                h(signum, None)
            elif h == signal.SIG_DFL:
                os.kill(os.getpid(), signum)


@contextlib.contextmanager
def atomic_files(*paths):
    """`atomic_path` for several files published as one: yields their temporary paths; on success
    renames them onto `paths` in the order given, with SIGTERM/Ctrl-C held back until the last
    rename is done. On an exception nothing is published and the temporary files (and parent
    folders made for them) are removed."""
    aps = [check_output_path(p) for p in paths]
    created, tmps, published = [], [], False
    try:
        for ap in aps:
            parent = os.path.dirname(ap)
            created += _makedirs_tracked(parent)
            tmp = _mkstemp_in(parent, f".{os.path.basename(ap)}.")
            tmps.append(tmp)
            os.chmod(tmp, 0o666 & ~_umask())
        with _naming(paths[-1]):
            yield list(tmps)
        check_terminated()  # a SIGTERM swallowed while the content was made: publish nothing
        with signals_held():
            for i, ap in enumerate(aps):
                os.replace(tmps[i], ap)
                tmps[i] = None
                published = True
    finally:
        for t in tmps:
            if t is not None and os.path.lexists(t):
                os.remove(t)
        if not published:
            _remove_empty(created)


def write_jsonl_atomic(path, rows, meta=None):
    """Write rows as JSONL atomically. With `meta` (a dict saying what the file is, e.g.
    {"kind": "contexts", "task": "mt", "task_fp": ...}), also write the sidecar
    `<path>.meta.json` = meta + {"rows", "sha256"}: a sidecar whose sha256 matches the file proves
    the file is complete and unchanged (`check_meta`). Both are written to temporary files, then
    published together (`atomic_files`): the sidecar first, the data file second, SIGTERM and
    Ctrl-C held back between the two renames. So an interruption never leaves a file without its
    sidecar (which would pass for a hand-made file); even a SIGKILL between the renames leaves a
    sidecar whose sha256 does not match, read as "changed since written". Without `meta` a stale
    sidecar is removed after the data file is replaced."""
    rows = list(rows)
    h = hashlib.sha256()
    mp = meta_path(path)
    check_output_path(path)
    if meta is not None or os.path.lexists(mp):
        check_output_path(mp)
    with atomic_files(*([mp, path] if meta is not None else [path])) as tmps:
        with open(tmps[-1], "w", encoding="utf-8") as f:
            for row in rows:
                try:
                    line = dumps_row(row) + "\n"
                except ValueError:
                    raise UserError(f"{path}: refusing to write NaN/inf in a row ({str(row)[:120]})") from None
                f.write(line)
                h.update(line.encode("utf-8"))
        if meta is not None:
            with open(tmps[0], "w", encoding="utf-8") as f:
                f.write(json.dumps({**meta, "rows": len(rows), "sha256": h.hexdigest()}, indent=2,
                                   ensure_ascii=False) + "\n")
    if meta is None and os.path.lexists(mp):
        os.remove(mp)


def meta_path(path):
    return os.fspath(path) + ".meta.json"


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_meta(path):
    """The sidecar of a JSONL file written with meta (None when it has none)."""
    mp = meta_path(path)
    if not os.path.isfile(mp):
        return None
    meta = read_json(mp, "metadata")
    if not isinstance(meta, dict):
        raise UserError(f"{mp}: expected a JSON object")
    return meta


def is_complete(path):
    """True when `path` exists and its sidecar's sha256 matches its content."""
    try:
        meta = read_meta(path)
    except UserError:
        return False
    return bool(meta) and os.path.isfile(path) and meta.get("sha256") == file_sha256(path)


def check_meta(path, kind, task=None, task_fp=None, required=False, partial_ok=False):
    """Refuse a file made for something else: another kind of file, another task, another data
    set (task fingerprint), or content changed since it was written; and, unless `partial_ok`, a
    file whose sidecar says `"complete": false` (the progress of an interrupted run). Files without
    a sidecar are accepted unless `required` (hand-made files stay usable). Returns the meta dict or None."""
    meta = read_meta(path)
    if meta is None:
        if required:
            raise UserError(f"{path}: no {os.path.basename(meta_path(path))} beside it (not written by this repository?)")
        return None
    if meta.get("kind") != kind:
        raise UserError(f"{path} is a {meta.get('kind')} file, not a {kind} file")
    if task is not None and meta.get("task") not in (None, task):
        raise UserError(f"{path} was made for task '{meta.get('task')}', not '{task}'")
    if task_fp is not None and meta.get("task_fp") not in (None, task_fp):
        raise UserError(f"{path} was made for another {task} data set (fingerprint {meta.get('task_fp')}, "
                        f"this one is {task_fp})")
    if meta.get("sha256") and meta["sha256"] != file_sha256(path):
        raise UserError(f"{path} changed since it was written (sha256 differs from its .meta.json)")
    if meta.get("complete") is False and not partial_ok:
        of = f" of {meta['inputs']}" if isinstance(meta.get("inputs"), int) else ""
        raise UserError(f"{path} is the progress of an interrupted run ({meta.get('rows')} rows{of}); run the "
                        f"command that made it again (same --out) to finish it")
    return meta


def read_progress(path, kind, conf, what, required=()):
    """The rows of a progress file (or a finished output) written with meta of this `kind` and
    configuration `conf`, whose content is intact; None (with a one-line note, the file is later
    overwritten) for a missing, foreign, stale, incomplete or malformed file."""
    if not os.path.isfile(path):
        return None
    try:
        meta = read_meta(path)
        if not meta or meta.get("kind") != kind or meta.get("config") != conf or not is_complete(path):
            print(f"note: not reusing {path} (another configuration, or incomplete)", flush=True)
            return None
        return read_jsonl(path, what, required=required)
    except UserError as e:
        print(f"note: not reusing {path} ({e})", flush=True)
        return None


# ----------------------------------------------------------------------------- completion manifests
def done_path(path):
    return os.fspath(path).rstrip("/\\") + ".done"


def output_digest(path):
    """sha256 of a file, or of a folder (relative names, sizes and contents of all its files,
    hidden temporary files excluded). None when `path` does not exist."""
    path = os.fspath(path)
    if os.path.isfile(path):
        return file_sha256(path)
    if not os.path.isdir(path):
        return None
    h = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(f for f in files if not f.startswith(".")):
            p = os.path.join(root, name)
            h.update(os.path.relpath(p, path).encode("utf-8") + b"\0" + file_sha256(p).encode("ascii") + b"\n")
    return h.hexdigest()


def write_done(path, info=None):
    """Record that the work producing `path` (a file or folder) FINISHED: `<path>.done` =
    info + the digest of `path`. Written atomically after the output itself."""
    digest = output_digest(path)
    if digest is None:
        raise UserError(f"cannot mark {path} done: it does not exist")
    write_json_atomic(done_path(path), {**(info or {}), "digest": digest})


def is_done(path, info=None):
    """True only when `<path>.done` exists, records the same `info` (e.g. the command that made
    it) and the digest of `path` still matches: an interrupted or changed output is not done."""
    dp = done_path(path)
    if not os.path.isfile(dp):
        return False
    try:
        rec = read_json(dp, "completion manifest")
    except UserError:
        return False
    if not isinstance(rec, dict):
        return False
    for k, v in (info or {}).items():
        if rec.get(k) != json.loads(json.dumps(v)):
            return False
    return rec.get("digest") is not None and rec.get("digest") == output_digest(path)


def config_hash(obj, n=12):
    """Short stable hash of a JSON-serialisable config."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:n]


# ----------------------------------------------------------------------------- reading
def _open_text(path, what):
    path = os.fspath(path)
    if os.path.isdir(path):
        raise UserError(f"{what} path {path} is a folder, not a file")
    if not os.path.isfile(path):
        raise UserError(f"{what} file not found: {path}")
    try:
        return open(path, encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot read {what} file {path}: {e.strerror}") from None


def read_jsonl(path, what="rows", required=(), types=None):
    """Read a JSONL file; a missing/unreadable/non-UTF-8 file or a malformed line is a UserError
    naming it. `types` ({field: type}) checks field types per row (`require_types`)."""
    rows = []
    with _open_text(path, what) as ft:
        f = ft.buffer
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(f"{path}:{n}: not UTF-8 text (byte 0x{raw[e.start]:02x})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: malformed JSON ({e.msg})") from None
            except RecursionError:
                raise UserError(f"{path}:{n}: JSON nested too deeply") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
            missing = [k for k in required if k not in row]
            if missing:
                raise UserError(f"{path}:{n}: missing field(s) {', '.join(missing)}")
            if types:
                require_types(row, types, where=f"{path}:{n}")
            rows.append(row)
    return rows


def read_json(path, what="JSON"):
    with _open_text(path, what) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
        except UnicodeDecodeError as e:
            raise UserError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})") from None
        except RecursionError:
            raise UserError(f"{path}: JSON nested too deeply") from None


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "an object",
               bool: "true/false", type(None): "null"}


def _type_ok(value, t):
    if t is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, t)


def require_types(row, spec, where="row", optional=()):
    """Check `row[field]` against `spec` = {field: type or tuple of types} (int excludes bool;
    float accepts ints but not NaN/inf). Missing fields (unless in `optional`) and wrong types
    raise ONE UserError naming `where` (e.g. "path:line"), the field, and what was found."""
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for field, types in spec.items():
        if field not in row:
            if field in optional:
                continue
            raise UserError(f"{where}: missing field '{field}'")
        ts = types if isinstance(types, tuple) else (types,)
        if not any(_type_ok(row[field], t) for t in ts):
            want = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in ts)
            raise UserError(f"{where}: field '{field}' must be {want}, got {json.dumps(row[field])[:60]}")
    return row


# ----------------------------------------------------------------------------- misc
def print_config(cfg, title="config"):
    """Print the run configuration (an argparse Namespace or a dict), one key per line."""
    d = vars(cfg) if not isinstance(cfg, dict) else cfg
    print(f"== {title} ==", flush=True)
    for k in sorted(d):
        print(f"  {k:<16} {d[k]}", flush=True)


def seed32(seed):
    """A seed in [0, 2**32-1]: unchanged when already there (outputs stay byte-identical), else a
    deterministic reduction (sha256 of the decimal text), so any Python int is accepted."""
    from .config import SEED_MAX  # (config.py imports this module)
    seed = int(seed)
    if 0 <= seed <= SEED_MAX:
        return seed
    return int.from_bytes(hashlib.sha256(str(seed).encode()).digest()[:4], "big")


def set_seed(seed):
    """Seed random, numpy and torch. The CLI type `config.SEED` caps seeds to [0, 2**32-1]; any other int
    (code, configs) is reduced with `seed32`."""
    seed = seed32(seed)
    random.seed(seed)
    try:
        import numpy as np
        np.random.seed(seed)
    except ImportError:
        pass
    try:
        import torch
        torch.manual_seed(seed)
    except ImportError:
        pass


def progress(iterable=None, **kw):
    """A tqdm progress bar on stderr (quiet when CC_NO_PROGRESS=1). It redraws at most once a second on a
    terminal, every 30 s when stderr is a file or a pipe (a log then holds a few lines per bar, not one
    per step)."""
    from tqdm.auto import tqdm
    kw.setdefault("dynamic_ncols", True)
    kw.setdefault("disable", os.environ.get("CC_NO_PROGRESS") == "1")
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    kw.setdefault("mininterval", 1.0 if tty else 30.0)
    return tqdm(iterable, file=sys.stderr, **kw)


def check_range(name, value, lo=None, hi=None):
    """UserError unless value is None or a finite number in [lo, hi] (NaN and inf are refused)."""
    if value is None:
        return
    bad = isinstance(value, float) and not math.isfinite(value)
    if bad or (lo is not None and value < lo) or (hi is not None and value > hi):
        lo_s = "-inf" if lo is None else lo
        hi_s = "inf" if hi is None else hi
        raise UserError(f"--{name} must be in [{lo_s}, {hi_s}], got {value}")

