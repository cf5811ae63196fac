"""The SQL sandbox: everything that touches SQLite (the sql task, tasks.SQLTask, asks only here).

  sqlite_ro(path)                 a read-only connection for our own trusted queries (schema, values)
  execute_sql(db, sql, timeout)   rows of UNTRUSTED (generated or gold) SQL in the sandbox, or None
  result_key(db, sql, timeout)    the rows as an order-free set to compare results (execution accuracy)
  unrunnable(db, sqls, deadline)  per query, why it cannot run in the sandbox (None when it can)
  table_definitions / table_columns / column_values   schema and values (trusted reads)
"""
import os
import re
import sqlite3
import time

from .common import UserError


def sqlite_ro(path):
    """Open an SQLite database read-only (our own trusted queries: schema, perturbation values).
    Untrusted (generated) SQL goes through `execute_sql`, which adds the sandbox."""
    if not os.path.isfile(path):
        raise UserError(f"SQLite database not found: {path}")
    return sqlite3.connect(sqlite_uri(path), uri=True, check_same_thread=False)


def sqlite_uri(path):
    """The read-only `file:` URI of a database path. The path is percent-encoded: a raw '#' or '?'
    in it (a --data folder named "x#my") would end SQLite's path there, and SQLite would open, and
    create, read-write, a database at the truncated path outside --data."""
    from urllib.parse import quote
    return f"file:{quote(os.path.abspath(path), safe='/')}?mode=ro"


# Sandbox of generated SQL (predictions and gold queries alike):
#  * authorizer: a whitelist of read actions (SELECT, READ of the main database or a CTE, FUNCTION
#    except a few dangerous ones, RECURSIVE CTEs); ATTACH, DETACH, PRAGMA, writes, DDL, transactions
#    are denied at prepare time;
#  * VACUUM (also `VACUUM INTO 'file'`) never consults the authorizer, so every statement is first
#    compiled with EXPLAIN (which runs nothing) and refused when its bytecode could write
#    (SQL_WRITE_OPCODES or a write transaction);
#  * limits (sqlite3 setlimit): strings/blobs <= SQL_MAX_LENGTH bytes (zeroblob/replace/hex/printf
#    bombs fail at once), no attached databases, bounded SQL text, expression depth, columns...;
#  * a deadline checked by a progress handler every 1000 VM steps and while fetching, and at most
#    SQL_MAX_ROWS result rows; either limit -> the query counts as failed (None).
SQL_MAX_LENGTH = 10_000_000
SQL_MAX_ROWS = 1_000_000
SQL_LIMITS = {"SQLITE_LIMIT_LENGTH": SQL_MAX_LENGTH, "SQLITE_LIMIT_SQL_LENGTH": 1_000_000,
              "SQLITE_LIMIT_COLUMN": 2000, "SQLITE_LIMIT_EXPR_DEPTH": 1000, "SQLITE_LIMIT_COMPOUND_SELECT": 500,
              "SQLITE_LIMIT_VDBE_OP": 250_000, "SQLITE_LIMIT_FUNCTION_ARG": 100, "SQLITE_LIMIT_ATTACHED": 0,
              "SQLITE_LIMIT_LIKE_PATTERN_LENGTH": 50_000, "SQLITE_LIMIT_VARIABLE_NUMBER": 1000,
              "SQLITE_LIMIT_TRIGGER_DEPTH": 1}
SQL_DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer", "sqlite_dbpage"}
SQL_WRITE_OPCODES = {"Vacuum", "IncrVacuum", "OpenWrite", "ParseSchema", "CreateBtree", "Destroy", "Clear",
                     "VCreate", "VDestroy", "VUpdate", "JournalMode", "Checkpoint", "SqlExec", "DropTable",
                     "DropIndex", "DropTrigger", "LoadAnalysis", "Expire", "AutoCommit"}


def _sql_authorizer(action, arg1, arg2, db_name, trigger):
    if action == sqlite3.SQLITE_SELECT or action == getattr(sqlite3, "SQLITE_RECURSIVE", 33):
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_READ:
        return sqlite3.SQLITE_OK if db_name in (None, "main") else sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION:
        return sqlite3.SQLITE_DENY if (arg2 or "").lower() in SQL_DENIED_FUNCTIONS else sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


SQL_MAX_PRINTF_WIDTH = 100_000
_PRINTF_SPEC = re.compile(r"%([-+ 0#,!]*)(\*|\d+)?(?:\.(\*|\d+))?([a-zA-Z%])")


def _limit_connection(conn):
    for name, value in SQL_LIMITS.items():
        if hasattr(sqlite3, name) and hasattr(conn, "setlimit"):  # setlimit: Python >= 3.11
            conn.setlimit(getattr(sqlite3, name), value)


def _safe_printf(helper, name):
    """printf()/format() whose field widths and precisions are bounded: SQLite's own printf
    loops over a huge width (printf('%.*c', 2e9, 'x')) for seconds inside ONE VM step, where
    no progress handler can stop it. Valid calls are delegated to SQLite's printf on a private
    in-memory connection, so results are identical."""
    def f(*args):
        if not args or not isinstance(args[0], str):
            return helper.execute(f"SELECT {name}({','.join('?' * len(args))})", args).fetchone()[0]
        i = 1
        for m in _PRINTF_SPEC.finditer(args[0]):
            for part in (m.group(2), m.group(3)):
                if part == "*":
                    v = args[i] if i < len(args) else 0
                    i += 1
                    try:
                        v = abs(int(v))
                    except (TypeError, ValueError):
                        v = 0
                else:
                    v = int(part) if part else 0
                if v > SQL_MAX_PRINTF_WIDTH:
                    raise ValueError(f"{name}: field width {v} too large")
            if m.group(4) != "%":
                i += 1
        return helper.execute(f"SELECT {name}({','.join('?' * len(args))})", args).fetchone()[0]
    return f


def sandboxed_connection(db_path, deadline):
    """A read-only connection for untrusted SQL: authorizer, limits, bounded printf and a
    progress deadline."""
    conn = sqlite_ro(db_path)
    _limit_connection(conn)
    helper = sqlite3.connect(":memory:", check_same_thread=False)
    _limit_connection(helper)
    for name in ("printf", "format"):
        conn.create_function(name, -1, _safe_printf(helper, name), deterministic=True)
    conn.set_authorizer(_sql_authorizer)
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
    return conn, helper


def sql_is_read_only(conn, sql):
    """Compile `sql` with EXPLAIN (nothing runs) and check that it is a query (the authorizer
    saw a SELECT) whose bytecode cannot write (no write opcode, no write transaction)."""
    seen = []

    def auth(action, *rest):
        seen.append(action)
        return _sql_authorizer(action, *rest)
    conn.set_authorizer(auth)
    try:
        ops = conn.execute("EXPLAIN " + sql).fetchall()
    finally:
        conn.set_authorizer(_sql_authorizer)
    if sqlite3.SQLITE_SELECT not in seen:
        return False
    for row in ops:
        op, p2 = row[1], row[3]
        if op in SQL_WRITE_OPCODES or (op == "Transaction" and p2 != 0):
            return False
    return True


def execute_sql(db_path, sql, timeout=5.0, max_rows=SQL_MAX_ROWS):
    """Rows of the untrusted `sql` in the sandbox (see above), or None on error, refusal,
    timeout or more than max_rows rows."""
    if not isinstance(sql, str) or not sql.strip():
        return None
    deadline = time.monotonic() + timeout
    conn, helper = sandboxed_connection(db_path, deadline)
    try:
        if not sql_is_read_only(conn, sql):
            return None
        cur, rows = conn.execute(sql), []
        while True:
            chunk = cur.fetchmany(1000)
            if not chunk:
                return rows
            rows.extend(chunk)
            if len(rows) > max_rows or time.monotonic() > deadline:
                return None
    except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError, MemoryError, RecursionError):
        return None
    finally:
        conn.close()
        helper.close()


def quote_ident(name):
    """An SQL identifier in double quotes (embedded quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


# ------------------------------------------------------------------------------------- results
def rows_key(rows):
    """Rows as an order-free set of repr tuples: two results are the same when their keys are equal."""
    return set(tuple(map(repr, r)) for r in rows)


def result_key(db_path, sql, timeout=5.0):
    """rows_key of the rows of the untrusted `sql` (execute_sql), or None when it fails."""
    rows = execute_sql(db_path, sql, timeout)
    return None if rows is None else rows_key(rows)


def unrunnable(db_path, sqls, deadline):
    """Per query of `sqls` (all on one database): None when it compiles (EXPLAIN: nothing runs) in the
    sandbox as one read-only SELECT, else why not ("empty SQL", a refusal, or SQLite's error)."""
    reasons = []
    conn, helper = sandboxed_connection(db_path, deadline)
    try:
        for sql in sqls:
            try:
                if not sql.strip():
                    why = "empty SQL"
                elif not sql_is_read_only(conn, sql):
                    why = "not a read-only SELECT (the sandbox refuses it)"
                else:
                    why = None
            except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError, RecursionError) as e:
                why = " ".join(str(e).split())[:120] or type(e).__name__
            reasons.append(why)
    finally:
        conn.close()
        helper.close()
    return reasons


# ------------------------------------------------------------------------------------- schema (trusted reads)
def table_definitions(db_path):
    """[(table name, CREATE statement)] of a database, in sqlite_master order."""
    conn = sqlite_ro(db_path)
    try:
        return conn.execute("SELECT name, sql FROM sqlite_master WHERE type='table' AND sql IS NOT NULL").fetchall()
    finally:
        conn.close()


def table_columns(db_path):
    """{table: [column names]} of a database."""
    conn = sqlite_ro(db_path)
    try:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: [r[1] for r in conn.execute(f"PRAGMA table_info({quote_ident(t)})")] for t in tables}
    finally:
        conn.close()


def column_values(db_path, columns, column, limit=200):
    """Distinct non-NULL values of `column` (matched case-insensitively) from every table of `columns`
    ({table: [column names]}, as table_columns gives) that really has it, at most `limit` per table,
    table by table. Only tables that have the column are read: a quoted name like "city" on a table
    without it would be read by SQLite as the string 'city'."""
    values, conn = [], sqlite_ro(db_path)
    try:
        for table, tcols in columns.items():
            real = next((c for c in tcols if c.lower() == column.lower()), None)
            if real is None:
                continue
            values += [r[0] for r in conn.execute(f"SELECT DISTINCT {quote_ident(real)} FROM {quote_ident(table)} "
                                                  f"WHERE {quote_ident(real)} IS NOT NULL LIMIT {limit}").fetchall()]
    finally:
        conn.close()
    return values
