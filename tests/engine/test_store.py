"""Run history: what the CLI, the GUI and crashed runs leave behind must stay consistent."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from engine.store import SCHEMA_VERSION, RunStore, default_db_path


def _run(store: RunStore, kind: str = "price", **kw) -> str:
    return store.create_run(kind, dataset="spx", fingerprint="abc", config={"lr": 1e-3, "nested": [1, 2]},
                            seed=7, device="cpu", **kw)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_default_path_follows_environment(isolated_home):
    assert default_db_path() == isolated_home / "runs.db"
    store = RunStore()
    assert store.path == isolated_home / "runs.db" and store.runs_dir == isolated_home / "runs"


def test_database_is_wal_and_versioned(tmp_path):
    store = RunStore(tmp_path / "r.db")
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.schema_version() == SCHEMA_VERSION
    RunStore(tmp_path / "r.db")  # reopening does not migrate twice
    assert store.schema_version() == SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path):
    RunStore(tmp_path / "r.db").close()
    conn = sqlite3.connect(tmp_path / "r.db")
    conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        RunStore(tmp_path / "r.db")


def test_run_lifecycle_round_trips(tmp_path):
    store = RunStore(tmp_path / "r.db")
    run_id = _run(store)
    assert run_id.startswith("price-")
    run = store.get_run(run_id)
    assert run["status"] == "running" and run["config"] == {"lr": 1e-3, "nested": [1, 2]}
    assert set(run["versions"]) == {"python", "torch", "numpy", "pandas", "engine"}
    store.log_metrics(run_id, [(1, "train/loss", 2.0), (2, "train/loss", 1.5), (2, "val/loss", 1.7)])
    store.add_checkpoint(run_id, tmp_path / "best.pt", "ff" * 32, 2, True)
    store.add_checkpoint(run_id, tmp_path / "best.pt", "ee" * 32, 4, True)  # rewritten in place
    store.finish_run(run_id, "finished", metrics={"val_loss": 1.7})
    run = store.get_run(run_id)
    assert run["status"] == "finished" and run["metrics"] == {"val_loss": 1.7} and run["ended"]
    assert store.metric_series(run_id, "train/loss") == [(1, 2.0), (2, 1.5)]
    assert store.metric_names(run_id) == ["train/loss", "val/loss"]
    [ckpt] = store.checkpoints(run_id)
    assert ckpt["step"] == 4 and ckpt["sha256"] == "ee" * 32 and ckpt["is_best"] is True
    assert store.checkpoint(run_id, best=False) is None
    with pytest.raises(ValueError, match="status"):
        store.finish_run(run_id, "done")
    with pytest.raises(KeyError):
        store.finish_run("price-nope", "finished")


def test_list_runs_filters(tmp_path):
    store = RunStore(tmp_path / "r.db")
    a, b = _run(store), _run(store, kind="strategy")
    store.finish_run(a, "failed", error="boom")
    assert {r["run_id"] for r in store.list_runs()} == {a, b}
    assert [r["run_id"] for r in store.list_runs(kind="strategy")] == [b]
    assert [r["run_id"] for r in store.list_runs(status="failed")] == [a]
    assert store.get_run("missing") is None


def test_dead_writer_marks_run_interrupted_on_open(tmp_path):
    store = RunStore(tmp_path / "r.db")
    dead, alive, silent = _run(store), _run(store), _run(store)
    store.db["runs"].update(dead, {"pid": _dead_pid()})
    store.db["runs"].update(alive, {"pid": os.getppid()})  # another live process
    store.db["runs"].update(silent, {"heartbeat": time.time() - 3600})  # live pid, silent for 1 h
    RunStore(tmp_path / "r.db")
    assert store.get_run(dead)["status"] == "interrupted"
    assert store.get_run(alive)["status"] == "running"
    assert store.get_run(silent)["status"] == "interrupted"


def test_run_on_another_host_is_judged_by_heartbeat_only(tmp_path):
    store = RunStore(tmp_path / "r.db")
    fresh, stale = _run(store), _run(store)
    store.db["runs"].update(fresh, {"host": "gpu-box", "pid": _dead_pid()})
    store.db["runs"].update(stale, {"host": "gpu-box", "heartbeat": time.time() - 3600})
    assert store.mark_interrupted() == [stale]
    assert store.get_run(fresh)["status"] == "running"


def test_heartbeat_revives_a_run_wrongly_marked_interrupted(tmp_path):
    store = RunStore(tmp_path / "r.db")
    run_id = _run(store)
    store.db["runs"].update(run_id, {"heartbeat": time.time() - 3600})
    assert store.mark_interrupted() == [run_id]
    store.heartbeat(run_id, 12)
    run = store.get_run(run_id)
    assert run["status"] == "running" and run["step"] == 12 and run["ended"] is None
    store.finish_run(run_id, "cancelled")
    store.heartbeat(run_id, 13)  # a late heartbeat never reopens a finished run
    assert store.get_run(run_id)["status"] == "cancelled"


def test_claim_run_restarts_an_interrupted_run(tmp_path):
    store = RunStore(tmp_path / "r.db")
    run_id = _run(store)
    store.finish_run(run_id, "interrupted")
    store.claim_run(run_id, device="cuda")
    run = store.get_run(run_id)
    assert run["status"] == "running" and run["ended"] is None and run["device"] == "cuda"


def test_delete_run_removes_rows_and_its_folder_only(tmp_path):
    store = RunStore(tmp_path / "r.db")
    run_id, other = _run(store), _run(store)
    folder = store.runs_dir / run_id
    folder.mkdir(parents=True)
    (folder / "best.pt").write_bytes(b"x")
    store.add_checkpoint(run_id, folder / "best.pt", "aa", 1, True)
    store.log_metrics(run_id, [(1, "train/loss", 1.0)])
    store.log_metrics(other, [(1, "train/loss", 1.0)])
    bt = store.add_backtest(run_id, dataset="spx", config={}, metrics={"sharpe": 1.0},
                            baselines={"buy_and_hold": {}}, frame_json={"a": [1]})
    store.add_export(bt, tmp_path / "s.csv", 10, "bb")
    assert store.get_backtest(bt)["frame_json"] == {"a": [1]}
    store.delete_run(run_id)
    assert store.get_run(run_id) is None and not folder.exists()
    assert store.list_backtests(run_id) == [] and store.list_exports(bt) == []
    assert store.metric_series(other, "train/loss") == [(1, 1.0)]


def test_concurrent_writer_and_readers(tmp_path):
    """The GUI reads while a worker thread and another process write."""
    store = RunStore(tmp_path / "r.db")
    run_id = _run(store)
    other = subprocess.Popen([sys.executable, "-c", (
        "import sys; sys.path.insert(0, '.');"
        "from engine.store import RunStore; s = RunStore(sys.argv[1]);"
        "[s.log_metrics(sys.argv[2], [(i, 'p/x', 1.0)]) for i in range(100)]"),
        str(tmp_path / "r.db"), run_id])
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for i in range(100):
                store.log_metrics(run_id, [(i, "t/x", float(i))])
                store.heartbeat(run_id, i)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=write)
    worker.start()
    while worker.is_alive():
        store.list_runs()
        store.metric_series(run_id, "t/x")
    worker.join()
    assert other.wait(timeout=60) == 0
    assert not errors
    assert len(store.metric_series(run_id, "t/x")) == 100
    assert len(store.metric_series(run_id, "p/x")) == 100
    assert store.get_run(run_id)["step"] == 99
