"""Small shared helpers: clear errors, atomic writes, JSONL I/O, seeding, progress bars.

Every script in this repository follows the same conventions:
  * bad input raises `UserError`; `run_main` turns it into ONE line on stderr and exit code 2;
  * outputs are written atomically (temp file in the same folder, then `os.replace`), so a
    crash never leaves a half-written JSONL behind;
  * the configuration is printed at start; randomness is seeded.
"""
import contextlib
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


def write_jsonl_atomic(path, rows):
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(dumps_row(row) + "\n")


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
