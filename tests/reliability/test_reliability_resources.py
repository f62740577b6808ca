"""Resource faults: a read-only run-history folder, a full disk, the GPU out of memory.

Each ends with a clear message (what happened, what to do, what is kept) and never a crash: the
job's last event is Finished(status="failed"), the run is recorded failed where the history is
writable, the previous checkpoint still loads, and the app can start the next job."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

import pytest
import torch

from engine import checkpoint as checkpoint_module
from engine.checkpoint import load_checkpoint
from engine.config import DataConfig, PriceModelConfig, TrainConfig, override
from engine.events import CheckpointEvent, Finished, RunStarted
from engine.store import RunStore, RunStoreError
from engine.training.price import PriceStage, train_price

TINY = override(PriceModelConfig(), d_model=32, n_layers=1, n_heads=2, kv_lora_rank=16,
                qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8, ffn_hidden=64)
DATA = DataConfig(start="2015-01-01")
TRAIN = TrainConfig(epochs=1, max_steps=8, batch_size=16, eval_every=2, lr=1e-3, warmup_steps=2,
                    precision="fp32", device="cpu")
ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0


def train(store: RunStore, **kw) -> list:
    return list(train_price(["spx"], model_cfg=TINY, data_cfg=DATA, train_cfg=TRAIN, store=store, **kw))


# ---------------------------------------------------------------- read-only history folder


def make_read_only(folder: Path, monkeypatch) -> None:
    """chmod the folder read-only; root ignores permissions, so there SQLite opens the file in its
    own read-only mode and creating the folder is refused, which is what a read-only mount does."""
    folder.chmod(0o555)
    if ROOT_USER:
        connect = sqlite3.connect
        monkeypatch.setattr(sqlite3, "connect", lambda path, *a, **k: connect(
            f"file:{path}?mode=ro", *a, uri=True, **k))
        monkeypatch.setattr(Path, "mkdir", _refuse_mkdir)


def _refuse_mkdir(self: Path, *args, **kwargs) -> None:
    if not self.is_dir():
        raise PermissionError(errno.EACCES, "Permission denied", str(self))


@pytest.fixture
def history(tmp_path):
    folder = tmp_path / "history"
    folder.mkdir()
    yield folder
    folder.chmod(0o755)


def test_read_only_history_folder_is_a_clear_error_naming_it(history, monkeypatch):
    store = RunStore(history / "runs.db")
    train_id = store.create_run("price", dataset="spx", fingerprint="f", config={}, seed=0, device="cpu")
    store.finish_run(train_id, "finished")
    store.close()
    make_read_only(history, monkeypatch)
    with pytest.raises(RunStoreError) as caught:
        RunStore(history / "runs.db")
    message = str(caught.value)
    assert str(history) in message and "not writable" in message
    assert "QUANT_WORKSTATION_HOME" in message  # what to do about it
    new = history / "sub" / "runs.db"
    with pytest.raises(RunStoreError, match=f"{history / 'sub'}.*not writable"):
        RunStore(new)


def test_history_turning_read_only_mid_run_fails_the_job_cleanly(tmp_path):
    """The folder's disk is remounted read-only while training: no exception escapes the job."""
    store = RunStore(tmp_path / "runs.db")
    events = []
    for event in train_price(["spx"], model_cfg=TINY, data_cfg=DATA, train_cfg=TRAIN, store=store):
        events.append(event)
        if isinstance(event, RunStarted):  # SQLite's own read-only switch on the live connection
            store.db.execute("PRAGMA query_only = ON")
    done = events[-1]
    assert isinstance(done, Finished) and done.status == "failed"
    assert "run history" in done.error and "not writable" in done.error
    assert "Traceback" not in done.error
    store.db.execute("PRAGMA query_only = OFF")


# ---------------------------------------------------------------- disk full


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "disk full"),
                                         (errno.EACCES, "cannot write")])
def test_disk_full_on_a_checkpoint_fails_the_run_and_keeps_the_previous_one(tmp_path, monkeypatch,
                                                                            code, words):
    saves, real_save = [], torch.save

    def save(obj, f, *args, **kwargs):  # the 3rd checkpoint write runs out of space half-way
        saves.append(1)
        if len(saves) == 3:
            f.write(b"PK\x03\x04 half a file")
            raise OSError(code, os.strerror(code), getattr(f, "name", "checkpoint"))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", save)
    store = RunStore(tmp_path / "runs.db")
    events = train(store)
    done = events[-1]
    assert isinstance(done, Finished) and done.status == "failed"
    written = [e for e in events if isinstance(e, CheckpointEvent)]
    assert len(written) == 2  # best + last at step 2; the next write failed
    assert words in done.error and "previous checkpoint is kept" in done.error
    assert f"at step {written[-1].step + 2}" in done.error
    record = store.get_run(done.run_id)
    assert record["status"] == "failed" and record["error"] == done.error
    for event in written:  # both files still whole and loadable, at the step they were written
        assert load_checkpoint(event.path)["step"] == event.step
    assert sorted(p.name for p in Path(written[0].path).parent.iterdir()) == ["best.pt", "last.pt"]


# ---------------------------------------------------------------- out of memory


def _oom_at_step(monkeypatch, step: int) -> None:
    calls, real_loss = [], PriceStage.loss

    def loss(self, model, batch):
        calls.append(1)
        if len(calls) == step:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_loss(self, model, batch)

    monkeypatch.setattr(PriceStage, "loss", loss)


def test_out_of_memory_fails_the_job_with_a_hint(tmp_path, monkeypatch):
    _oom_at_step(monkeypatch, 4)
    store = RunStore(tmp_path / "runs.db")
    done = train(store)[-1]
    assert isinstance(done, Finished) and done.status == "failed" and done.step == 3
    for hint in ("out of memory", "smaller batch", "gradient accumulation", "smaller model preset"):
        assert hint in done.error, hint
    assert "previous checkpoint is kept" in done.error
    assert store.get_run(done.run_id)["status"] == "failed"
    monkeypatch.undo()
    assert train(store)[-1].status == "finished"  # the process is fine: the next job runs


def test_out_of_memory_in_the_app_shows_the_hint_and_the_app_stays_usable(qtbot, tmp_path,
                                                                         monkeypatch, isolated_home):
    from PySide6.QtCore import QSettings

    from workstation.main_window import MainWindow
    from workstation.wizards.train_wizard import TrainRequest

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "ini"))
    window = MainWindow(RunStore(isolated_home / "runs.db"))
    qtbot.addWidget(window)
    request = TrainRequest(datasets=["spx"], stage="price", price_run=None, data=DATA,
                           price_model=TINY, strategy_model=None, strategy_loss=None, train=TRAIN)
    _oom_at_step(monkeypatch, 2)
    window.start_training(request)
    with qtbot.waitSignal(window.runner.finished, timeout=60_000) as failed:
        pass
    assert failed.args[0].status == "failed" and "smaller batch" in failed.args[0].error
    assert not window.runner.is_running()
    panel = window.training_panel
    assert panel.banner.isVisibleTo(panel) and "out of memory" in panel.banner.text()
    monkeypatch.undo()
    window.start_training(request)  # the user follows the hint and starts again
    with qtbot.waitSignal(window.runner.finished, timeout=60_000) as again:
        pass
    assert again.args[0].status == "finished", again.args[0].error
