"""The run history under concurrent use: the GUI reads while a worker thread, a second app window
and another process (a torchrun rank, the CLI) write. Nothing fails with "database is locked" and
nothing written is lost. (tests/test_store.py has the short functional version.)"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from engine.store import SCHEMA_VERSION, RunStore

ROOT = Path(__file__).resolve().parents[2]
HAMMER_S = 10.0

WRITER_PROCESS = """
import sys, time
from engine.store import RunStore
store, run_id, until = RunStore(sys.argv[1]), sys.argv[2], time.time() + float(sys.argv[3])
n = 0
while time.time() < until:
    store.log_metrics(run_id, [(n, "proc/x", float(n))])
    store.heartbeat(run_id, n)
    n += 1
print(n)
"""


def _run(store: RunStore, kind: str = "price") -> str:
    return store.create_run(kind, dataset="spx", fingerprint="f", config={"a": 1}, seed=0, device="cpu")


def _thread(target, errors: list[BaseException]) -> threading.Thread:
    def guarded() -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=guarded)
    thread.start()
    return thread


def test_writer_thread_reader_loop_second_window_and_process_for_ten_seconds(tmp_path):
    db = tmp_path / "runs.db"
    gui, window2 = RunStore(db), RunStore(db)
    run_id, proc_run = _run(gui), _run(gui)
    until = time.monotonic() + HAMMER_S
    other = subprocess.Popen([sys.executable, "-c", WRITER_PROCESS, str(db), proc_run, str(HAMMER_S)],
                             cwd=ROOT, stdout=subprocess.PIPE, text=True)
    written = {"steps": 0, "checkpoints": 0, "runs": 0}

    def train() -> None:  # what a training worker does, as fast as it can
        while time.monotonic() < until:
            step = written["steps"]
            gui.log_metrics(run_id, [(step, "train/loss", 1.0 / (step + 1)), (step, "train/lr", 1e-3)])
            gui.heartbeat(run_id, step)
            if step % 20 == 0:
                gui.add_checkpoint(run_id, tmp_path / f"c{step}.pt", "sha", step, is_best=step % 40 == 0)
                written["checkpoints"] += 1
            written["steps"] += 1

    def second_window() -> None:  # the other window starts and finishes short runs
        while time.monotonic() < until:
            window2.finish_run(_run(window2, "backtest"), "finished", metrics={"sharpe": 1.0})
            written["runs"] += 1

    errors: list[BaseException] = []
    workers = [_thread(train, errors), _thread(second_window, errors)]
    reads = 0
    while any(w.is_alive() for w in workers):  # the GUI thread refreshing its views
        for store in (gui, window2):
            store.list_runs()
            store.metric_series(run_id, "train/loss")
            store.checkpoints(run_id)
            reads += 1
    for worker in workers:
        worker.join()
    proc_writes = int(other.communicate(timeout=60)[0])
    assert other.returncode == 0 and not errors, errors[:1]

    assert reads > 50 and written["steps"] > 50 and proc_writes > 50 and written["runs"] > 5
    for store in (gui, window2, RunStore(db)):  # every view sees everything, nothing lost
        assert len(store.metric_series(run_id, "train/loss")) == written["steps"]
        assert len(store.metric_series(proc_run, "proc/x")) == proc_writes
        assert len(store.checkpoints(run_id)) == written["checkpoints"]
        assert len(store.list_runs(kind="backtest", status="finished")) == written["runs"]
        assert store.get_run(run_id)["status"] == "running"  # the live writer is not "interrupted"


def test_a_long_write_elsewhere_is_waited_for_not_an_error(tmp_path):
    """Another program holds the write lock for a second: reads go on (WAL), writes wait."""
    db = tmp_path / "runs.db"
    store = RunStore(db)
    run_id = _run(store)
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO metrics VALUES (?, 0, 'other/x', 1.0)", [run_id])
    release = threading.Timer(1.0, holder.execute, ["COMMIT"])
    release.start()
    began = time.monotonic()
    assert store.get_run(run_id)["status"] == "running"  # a read does not wait for the writer
    assert time.monotonic() - began < 0.5
    store.log_metrics(run_id, [(1, "train/loss", 0.5)])  # waits for the lock instead of failing
    assert time.monotonic() - began >= 0.9
    release.join()
    holder.close()
    assert store.metric_series(run_id, "other/x") == [(0, 1.0)]
    assert store.metric_series(run_id, "train/loss") == [(1, 0.5)]


def test_two_windows_opening_a_new_history_at_once(tmp_path):
    """Both create the schema on first start; the migration runs once, neither fails."""
    db, errors, stores = tmp_path / "fresh" / "runs.db", [], []
    start = threading.Barrier(4)

    def open_store() -> None:
        start.wait()
        stores.append(RunStore(db))

    for worker in [_thread(open_store, errors) for _ in range(4)]:
        worker.join()
    assert not errors and len(stores) == 4
    ids = [_run(s) for s in stores]
    assert {r["run_id"] for r in stores[0].list_runs()} == set(ids)
    assert {s.schema_version() for s in stores} == {SCHEMA_VERSION}


def test_opening_a_second_window_does_not_interrupt_the_first_windows_run(tmp_path):
    db = tmp_path / "runs.db"
    first = RunStore(db)
    run_id = _run(first)
    second = RunStore(db)  # marks dead writers interrupted: this writer is alive
    assert second.get_run(run_id)["status"] == "running"
    first.finish_run(run_id, "finished", metrics={"mae": 1.0})
    assert second.get_run(run_id)["status"] == "finished"
    assert second.get_run(run_id)["metrics"] == {"mae": 1.0}
