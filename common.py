"""Small shared helpers: clear errors, atomic writes, JSONL I/O, seeding, progress bars.

Every script in this repository follows the same conventions:
  * bad input raises `UserError`; `run_main` turns it into ONE line on stderr and exit code 2;
  * outputs are written atomically (temp file in the same folder, then `os.replace`), so a
    crash never leaves a half-written JSONL behind;
  * the configuration is printed at start; randomness is seeded.
"""
import contextlib
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile


class UserError(Exception):
    """Bad input from the user: printed as a one-line error, no traceback."""


def run_main(main):
    """Run `main()`; a UserError becomes `error: <message>` on stderr and exit status 2."""
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)


# ----------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_path(path, is_dir=False):
    """Yield a temporary path next to `path`; on success rename it onto `path`.

    On an exception the temporary file/folder is removed and `path` is left untouched.
    """
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    base = os.path.basename(path)
    if is_dir:
        tmp = tempfile.mkdtemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
    else:
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
        os.close(fd)
    try:
        yield tmp
        if is_dir and os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text_atomic(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def write_json_atomic(path, obj):
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def dumps_row(row):
    return json.dumps(row, ensure_ascii=False, separators=(", ", ": "))


def write_jsonl_atomic(path, rows, meta=None):
    """Write rows as JSONL atomically. With `meta` (a dict saying what the file is, e.g.
    {"kind": "contexts", "task": "mt", "task_fp": ...}), also write the sidecar
    `<path>.meta.json` = meta + {"rows", "sha256"} AFTER the data file: a sidecar whose
    sha256 matches the file proves the file is complete and unchanged (`check_meta`)."""
    rows = list(rows)
    h = hashlib.sha256()
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                line = dumps_row(row) + "\n"
                f.write(line)
                h.update(line.encode("utf-8"))
    if meta is not None:
        write_json_atomic(meta_path(path), {**meta, "rows": len(rows), "sha256": h.hexdigest()})


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


def check_meta(path, kind, task=None, task_fp=None, required=False):
    """Refuse a file made for something else: another kind of file, another task, another data
    set (task fingerprint), or content changed since it was written. Files without a sidecar are
    accepted unless `required` (hand-made files stay usable). Returns the meta dict or None."""
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
    return meta


def config_hash(obj, n=12):
    """Short stable hash of a JSON-serialisable config."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:n]


def read_jsonl(path, what="rows", required=()):
    """Read a JSONL file; a missing file or a malformed line is a UserError naming it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"{what} file not found: {path}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: malformed JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
            missing = [k for k in required if k not in row]
            if missing:
                raise UserError(f"{path}:{n}: missing field(s) {', '.join(missing)}")
            rows.append(row)
    return rows


def read_json(path, what="JSON"):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"{what} file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None


# ----------------------------------------------------------------------------- misc
def print_config(cfg, title="config"):
    """Print the run configuration (an argparse Namespace or a dict), one key per line."""
    d = vars(cfg) if not isinstance(cfg, dict) else cfg
    print(f"== {title} ==", flush=True)
    for k in sorted(d):
        print(f"  {k:<16} {d[k]}", flush=True)


def set_seed(seed):
    random.seed(seed)
    try:
        import numpy as np
        np.random.seed(seed % 2**32)
    except ImportError:
        pass
    try:
        import torch
        torch.manual_seed(seed)
    except ImportError:
        pass


def progress(iterable=None, **kw):
    """A tqdm progress bar on stderr (quiet when CC_NO_PROGRESS=1)."""
    from tqdm.auto import tqdm
    kw.setdefault("dynamic_ncols", True)
    kw.setdefault("disable", os.environ.get("CC_NO_PROGRESS") == "1")
    return tqdm(iterable, file=sys.stderr, **kw)


def check_range(name, value, lo=None, hi=None):
    if value is None:
        return
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        lo_s = "-inf" if lo is None else lo
        hi_s = "inf" if hi is None else hi
        raise UserError(f"--{name} must be in [{lo_s}, {hi_s}], got {value}")


def check_output_path(path, is_dir=False):
    """Fail early (before any work) when an output path cannot be written as asked."""
    path = os.fspath(path)
    if not path:
        raise UserError("empty output path")
    if os.path.exists(path) and not is_dir and os.path.isdir(path):
        raise UserError(f"output {path} is a directory")
    parent = os.path.dirname(os.path.abspath(path))
    probe = parent
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if probe and not os.path.isdir(probe):
        raise UserError(f"output {path}: {probe} is a file, not a folder")
