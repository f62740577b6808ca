"""The run history: one SQLite file (WAL) that the CLI, the GUI and training subprocesses share.

Each thread gets its own connection because the GUI reads while a worker thread (or another
process, e.g. a torchrun rank) writes; every write is one short transaction.
"""

from __future__ import annotations

import copy
import errno
import functools
import json
import os
import secrets
import shutil
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

STATUSES = ("running", "finished", "cancelled", "failed", "interrupted")
STALE_HEARTBEAT_S = 600.0  # a running row whose writer has been silent this long is dead
BUSY_TIMEOUT_MS = 30_000
# SQLite messages of a fault outside the program (not a bug): explained to the user
_RESOURCE_FAULTS = ("readonly", "read-only", "unable to open", "full", "locked", "disk i/o")
_JSON_COLUMNS = ("config", "versions", "metrics", "baselines", "frame_json")
_HOST = socket.gethostname()


class RunStoreError(RuntimeError):
    """The run history cannot be opened or written (read-only folder, disk full, locked too long);
    the message names the file and what to do."""


def default_db_path() -> Path:
    """$QUANT_WORKSTATION_HOME/runs.db, else the platform's per-user data folder."""
    home = os.environ.get("QUANT_WORKSTATION_HOME")
    if home:
        return Path(home).expanduser() / "runs.db"
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "quant-workstation" / "runs.db"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    """Versions recorded with every run, so a result can be traced to the code that made it."""
    import numpy
    import pandas
    import torch

    from engine import __version__ as engine_version

    return {
        "python": sys.version.split()[0], "torch": torch.__version__, "numpy": numpy.__version__,
        "pandas": pandas.__version__, "engine": engine_version,
    }


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if sys.platform == "win32":
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not reaped yet is a zombie: dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def _v1(db: sqlite_utils.Database) -> None:
    db["runs"].create({
        "run_id": str, "kind": str, "status": str, "dataset": str, "fingerprint": str,
        "config": str, "seed": int, "device": str, "versions": str, "parent_run": str,
        "started": str, "ended": str, "step": int, "metrics": str, "error": str,
        "pid": int, "host": str, "heartbeat": float,
    }, pk="run_id")
    db["runs"].create_index(["kind", "status"])
    db["metrics"].create({"run_id": str, "step": int, "name": str, "value": float})
    db["metrics"].create_index(["run_id", "name", "step"])
    db["checkpoints"].create({
        "run_id": str, "path": str, "sha256": str, "step": int, "is_best": int, "created": str,
    }, pk=("run_id", "path"))
    db["backtests"].create({
        "backtest_id": str, "run_id": str, "dataset": str, "config": str, "metrics": str,
        "baselines": str, "frame_json": str, "created": str,
    }, pk="backtest_id")
    db["backtests"].create_index(["run_id"])
    db["exports"].create({
        "export_id": str, "backtest_id": str, "path": str, "rows": int, "sha256": str, "created": str,
    }, pk="export_id")


LEDGER_TABLES = ("ledger_days", "live_marks")


def _v2(db: sqlite_utils.Database) -> None:
    """The paper ledger and the live marks: append-only, refused at the database level."""
    db["ledger_days"].create({
        "ledger": str, "date": str, "run_id": str, "dataset": str, "instrument": str,
        "open": float, "close": float, "fill_price": float, "target": int, "side": str,
        "traded_quantity": float, "fee": float, "blocked": str, "quantity": float, "cash": float,
        "equity": float, "daily_return": float, "signal": int, "checkpoint_sha256": str, "config": str,
        "created": str,
    }, pk=("ledger", "date"))
    db["live_marks"].create({"run_id": str, "dataset": str, "live": int, "at": str})
    for table in LEDGER_TABLES:
        for event in ("UPDATE", "DELETE"):
            db.execute(f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                       "BEGIN SELECT RAISE(ABORT, 'append-only'); END")


def _v3(db: sqlite_utils.Database) -> None:
    """Portfolio live models: a mark keeps how its universe becomes weights (config, JSON), a ledger
    day the whole book (book, JSON). ADD COLUMN leaves the rows and the append-only triggers as they were."""
    db.execute("ALTER TABLE live_marks ADD COLUMN config TEXT")
    db.execute("ALTER TABLE ledger_days ADD COLUMN book TEXT")


# Append-only: MIGRATIONS[i] upgrades schema version i to i + 1.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2, _v3]
SCHEMA_VERSION = len(MIGRATIONS)


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for key in _JSON_COLUMNS:
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    if "is_best" in row:
        row["is_best"] = bool(row["is_best"])
    return row


def _new_id(prefix: str) -> str:
    return f"{prefix}-{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL. On a brand-new file several openers race for the switch, and SQLite answers
    "locked" at once there instead of waiting on the busy timeout: retry until the timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


T = TypeVar("T")


def _write(method: Callable[..., T]) -> Callable[..., T | None]:
    """A method that writes the history: it does nothing on a muted store (see RunStore.muted_view)."""
    @functools.wraps(method)
    def write(self: RunStore, *args: Any, **kwargs: Any) -> T | None:
        return None if self.muted else method(self, *args, **kwargs)
    return write


class RunStore:
    """Runs, their metric series, checkpoints, backtests and exported signals."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        self.muted = False
        self.runs_dir = self.path.parent / "runs"
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._migrate()
            self.mark_interrupted()
        except (OSError, sqlite3.Error) as exc:
            self.close()
            raise RunStoreError(self.explain(exc)) from exc

    def muted_view(self) -> RunStore:
        """The same history with its writes turned into no-ops, reads unchanged: what ranks other
        than 0 use under torchrun, where rank 0 alone records the run."""
        view = copy.copy(self)
        view.muted = True
        return view

    def explain(self, exc: BaseException) -> str:
        """A message a user can act on for an OS or SQLite failure of the history file."""
        text = str(exc) or type(exc).__name__
        if "full" in text or getattr(exc, "errno", None) == errno.ENOSPC:
            hint = "the disk is full: free some space and try again"
        elif "not a database" in text or "malformed" in text:
            hint = "the file is damaged: move it away (a new history is started) or restore a backup"
        elif "locked" in text:
            hint = f"another program kept it locked for over {BUSY_TIMEOUT_MS // 1000} s"
        else:
            hint = (f"the run-history folder {self.path.parent} is not writable (read-only or no "
                    "permission): fix its permissions or set QUANT_WORKSTATION_HOME to a writable folder")
        return f"run history {self.path}: {text}; {hint}"

    # connections -------------------------------------------------------------------------------
    @property
    def db(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _enable_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            db = self._local.db = sqlite_utils.Database(conn)
            with self._lock:
                self._all.append(conn)
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite_utils.Database]:
        """One short write transaction (BEGIN IMMEDIATE: take the write lock up front, no upgrade)."""
        try:
            db = self.db
            db.conn.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.conn.rollback()
                raise
            db.conn.commit()
        except sqlite3.OperationalError as exc:
            if not any(k in str(exc).lower() for k in _RESOURCE_FAULTS):
                raise
            raise RunStoreError(self.explain(exc)) from exc

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    def _migrate(self) -> None:
        with self._tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path}: schema version {version} is newer than this program's "
                    f"({SCHEMA_VERSION}); update the program")
            for migrate in MIGRATIONS[version:]:
                migrate(db)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])

    def schema_version(self) -> int:
        return int(self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])

    # runs --------------------------------------------------------------------------------------
    @_write
    def create_run(self, kind: str, *, dataset: str, fingerprint: str, config: dict, seed: int,
                   device: str, parent_run: str | None = None, status: str = "running") -> str:
        return self._insert_new("runs", "run_id", kind, {
            "kind": kind, "status": status, "dataset": dataset,
            "fingerprint": fingerprint, "config": json.dumps(config), "seed": seed,
            "device": device, "versions": json.dumps(package_versions()),
            "parent_run": parent_run, "started": _now(), "ended": None, "step": 0,
            "metrics": json.dumps({}), "error": None, **self._writer(),
        })

    def _insert_new(self, table: str, key: str, prefix: str, row: dict[str, Any]) -> str:
        """Insert `row` under a fresh id. Ids are per second plus a short random part, so two
        windows or a batch script creating rows in the same second may clash: draw another."""
        tries = 8
        while True:
            new_id = _new_id(prefix)
            try:
                with self._tx() as db:
                    db[table].insert({key: new_id, **row})
                return new_id
            except sqlite3.IntegrityError:
                tries -= 1
                if not tries:
                    raise

    @staticmethod
    def _writer() -> dict[str, Any]:
        return {"pid": os.getpid(), "host": _HOST, "heartbeat": time.time()}

    @_write
    def claim_run(self, run_id: str, device: str | None = None) -> None:
        """Mark an existing run as running again in this process (resume)."""
        changes = {"status": "running", "ended": None, "error": None, **self._writer()}
        if device is not None:
            changes["device"] = device
        self._update(run_id, changes)

    @_write
    def heartbeat(self, run_id: str, step: int | None = None) -> None:
        """The writer is alive; a run wrongly marked interrupted (e.g. during a very long
        evaluation) becomes running again."""
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET heartbeat = ?, step = COALESCE(?, step), ended = NULL, "
                "status = 'running' WHERE run_id = ? AND status IN ('running', 'interrupted')",
                [time.time(), step, run_id])

    @_write
    def finish_run(self, run_id: str, status: str, metrics: dict | None = None,
                   error: str | None = None, step: int | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}; expected one of {', '.join(STATUSES)}")
        changes: dict[str, Any] = {"status": status, "ended": _now(), "error": error}
        if metrics is not None:
            changes["metrics"] = json.dumps(metrics)
        if step is not None:
            changes["step"] = step
        self._update(run_id, changes)

    def _update(self, run_id: str, changes: dict[str, Any]) -> None:
        with self._tx() as db:
            if not db["runs"].count_where("run_id = ?", [run_id]):
                raise KeyError(f"no run {run_id!r} in {self.path}")
            db["runs"].update(run_id, changes)

    @_write
    def mark_interrupted(self) -> list[str]:
        """Runs left running by a process that died (or went silent) become interrupted."""
        stale = time.time() - STALE_HEARTBEAT_S
        dead = [
            row["run_id"] for row in self.db.query(
                "SELECT run_id, pid, host, heartbeat FROM runs WHERE status = 'running'")
            if (row["heartbeat"] or 0) < stale
            or (row["host"] == _HOST and not _pid_alive(row["pid"] or 0))
        ]
        for run_id in dead:
            with self._tx() as db:  # re-check inside the lock: the writer may have just finished
                db.execute(
                    "UPDATE runs SET status = 'interrupted', ended = ? "
                    "WHERE run_id = ? AND status = 'running'", [_now(), run_id])
        return dead

    def get_run(self, run_id: str) -> dict | None:
        rows = list(self.db.query("SELECT * FROM runs WHERE run_id = ?", [run_id]))
        return _decode(rows[0]) if rows else None

    def list_runs(self, kind: str | None = None, status: str | None = None) -> list[dict]:
        where, args = self._where(kind=kind, status=status)
        return [_decode(r) for r in self.db.query(
            f"SELECT * FROM runs {where} ORDER BY started DESC, run_id DESC", args)]

    @staticmethod
    def _where(**filters: Any) -> tuple[str, list[Any]]:
        used = {k: v for k, v in filters.items() if v is not None}
        clause = " AND ".join(f"{k} = ?" for k in used)
        return (f"WHERE {clause}" if clause else ""), list(used.values())

    # metrics and checkpoints -------------------------------------------------------------------
    @_write
    def log_metrics(self, run_id: str, rows: list[tuple[int, str, float]]) -> None:
        if not rows:
            return
        with self._tx() as db:
            db.conn.executemany(
                "INSERT INTO metrics (run_id, step, name, value) VALUES (?, ?, ?, ?)",
                [(run_id, int(s), n, float(v)) for s, n, v in rows])

    @_write
    def truncate_metrics(self, run_id: str, after_step: int) -> None:
        """Drop rows past a resume point, so a replayed stretch is not recorded twice."""
        with self._tx() as db:
            db.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", [run_id, after_step])

    def metric_series(self, run_id: str, name: str) -> list[tuple[int, float]]:
        return [tuple(r) for r in self.db.execute(
            "SELECT step, value FROM metrics WHERE run_id = ? AND name = ? ORDER BY step, rowid",
            [run_id, name]).fetchall()]

    def metric_names(self, run_id: str) -> list[str]:
        return [r[0] for r in self.db.execute(
            "SELECT DISTINCT name FROM metrics WHERE run_id = ? ORDER BY name", [run_id]).fetchall()]

    @_write
    def add_checkpoint(self, run_id: str, path: str | Path, sha256: str, step: int,
                       is_best: bool) -> None:
        """Record (or refresh: best.pt and last.pt are rewritten in place) a checkpoint file."""
        with self._tx() as db:
            db["checkpoints"].upsert({
                "run_id": run_id, "path": str(path), "sha256": sha256, "step": step,
                "is_best": int(is_best), "created": _now(),
            }, pk=("run_id", "path"))

    def checkpoints(self, run_id: str) -> list[dict]:
        return [_decode(r) for r in self.db.query(
            "SELECT * FROM checkpoints WHERE run_id = ? ORDER BY step, is_best", [run_id])]

    def checkpoint(self, run_id: str, best: bool) -> dict | None:
        """The best (or the latest non-best) checkpoint of a run, or None."""
        rows = [c for c in self.checkpoints(run_id) if c["is_best"] == best]
        return rows[-1] if rows else None

    # backtests and exports ---------------------------------------------------------------------
    @_write
    def add_backtest(self, run_id: str | None, *, dataset: str, config: dict, metrics: dict,
                     baselines: dict, frame_json: Any) -> str:
        return self._insert_new("backtests", "backtest_id", "backtest", {
            "run_id": run_id, "dataset": dataset,
            "config": json.dumps(config), "metrics": json.dumps(metrics),
            "baselines": json.dumps(baselines),
            "frame_json": frame_json if isinstance(frame_json, str) else json.dumps(frame_json),
            "created": _now(),
        })

    def get_backtest(self, backtest_id: str) -> dict | None:
        rows = list(self.db.query("SELECT * FROM backtests WHERE backtest_id = ?", [backtest_id]))
        return _decode(rows[0]) if rows else None

    def list_backtests(self, run_id: str | None = None) -> list[dict]:
        where, args = self._where(run_id=run_id)
        return [_decode(r) for r in self.db.query(
            f"SELECT * FROM backtests {where} ORDER BY created DESC, backtest_id DESC", args)]

    @_write
    def add_export(self, backtest_id: str, path: str | Path, rows: int, sha256: str) -> str:
        return self._insert_new("exports", "export_id", "export", {
            "backtest_id": backtest_id, "path": str(path), "rows": rows, "sha256": sha256,
            "created": _now(),
        })

    def list_exports(self, backtest_id: str) -> list[dict]:
        return list(self.db.query(
            "SELECT * FROM exports WHERE backtest_id = ? ORDER BY created", [backtest_id]))

    # paper ledger and live marks (append-only: the triggers of _v2 refuse edits) ---------------
    @_write
    def append_ledger(self, rows: list[dict[str, Any]]) -> None:
        """Append ledger days in one transaction; a day already recorded is refused (IntegrityError)."""
        with self._tx() as db:
            db["ledger_days"].insert_all([{**r, "created": _now()} for r in rows])

    def ledger_days(self, ledger: str) -> list[dict]:
        return list(self.db.query("SELECT * FROM ledger_days WHERE ledger = ? ORDER BY date", [ledger]))

    def ledgers(self) -> list[dict]:
        """One row per ledger: its run, dataset, days and last date."""
        return list(self.db.query(
            "SELECT ledger, run_id, dataset, instrument, COUNT(*) AS days, MAX(date) AS last "
            "FROM ledger_days GROUP BY ledger ORDER BY MAX(created) DESC"))

    @_write
    def mark_live(self, run_id: str, dataset: str, live: bool = True, config: dict | None = None) -> None:
        """Mark (or unmark) a run live on a dataset: an event, never an edit. config: how a universe is
        traded as a portfolio ({"portfolio": PortfolioConfig, "backtest": BacktestConfig} as dicts);
        None: each instrument on its own positions."""
        with self._tx() as db:
            db["live_marks"].insert({"run_id": run_id, "dataset": dataset, "live": int(live), "at": _now(),
                                     "config": None if config is None else json.dumps(config)})

    def live_models(self) -> list[dict]:
        """(run_id, dataset, at, config) of the pairs whose latest mark is live."""
        return [_decode(r) for r in self.db.query(
            "SELECT run_id, dataset, at, config FROM live_marks m WHERE rowid = (SELECT MAX(rowid) FROM live_marks "
            "WHERE run_id = m.run_id AND dataset = m.dataset) AND live = 1 ORDER BY at")]

    # deletion ----------------------------------------------------------------------------------
    @_write
    def delete_run(self, run_id: str, delete_files: bool = True) -> None:
        """Remove a run and everything recorded under it; optionally its checkpoint folder(s)."""
        folders = {Path(c["path"]).parent for c in self.checkpoints(run_id)} | {self.runs_dir / run_id}
        with self._tx() as db:
            args = [run_id]
            db.execute("DELETE FROM exports WHERE backtest_id IN "
                       "(SELECT backtest_id FROM backtests WHERE run_id = ?)", args)
            for table in ("backtests", "checkpoints", "metrics", "runs"):
                db.execute(f"DELETE FROM {table} WHERE run_id = ?", args)
        if delete_files:
            for folder in folders:
                if folder.name == run_id and folder.is_dir():  # only folders this run owns
                    shutil.rmtree(folder)

    @_write
    def delete_backtest(self, backtest_id: str) -> None:
        """Remove one backtest and its export records; the exported CSV files are the user's and stay."""
        with self._tx() as db:
            if not db["backtests"].count_where("backtest_id = ?", [backtest_id]):
                raise KeyError(f"no backtest {backtest_id!r} in {self.path}")
            for table in ("exports", "backtests"):
                db.execute(f"DELETE FROM {table} WHERE backtest_id = ?", [backtest_id])


__all__ = ["LEDGER_TABLES", "SCHEMA_VERSION", "STATUSES", "RunStore", "RunStoreError", "default_db_path",
           "package_versions"]
