"""Multi-process training from the GUI: the engine CLI under torchrun, followed through the run history.

The ranks record the run themselves (rank 0 writes the history file); the GUI only reads that file.
So the launch is a job like any other, a generator of events run by the JobRunner, and the Training
panel, the status bar, Esc and close-while-running behave as for an in-process run, with every
SQLite read off the GUI thread. Cancel sends SIGINT to the launcher, which forwards it once to its
workers: the CLI stops at the next step and records the run as cancelled. A process group still
alive after a grace period is killed, and a run it left "running" is marked interrupted.

The launcher is `python -m engine.training.launch`: torchrun with exact option names only, so the
engine's `--start` is not refused as an ambiguous `--start-method`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import fields
from pathlib import Path

from engine.config import PRESETS, DataConfig, PriceModelConfig, TrainConfig
from engine.events import CancelToken, EvalEvent, Event, Finished, RunStarted, StepEvent
from engine.store import RunStore

POLL_S = 0.5  # at least this long between reads of the history; longer when a read is slow
GRACE_S = 30.0  # after Cancel, how long the ranks get to record the run before the group is killed
BASE_PRESET = "tiny"  # the model config travels as this preset plus --set for every field that differs
MODULE_PREFIX = "grad_norm/"


def torchrun_command(datasets: list[str], model: PriceModelConfig, data: DataConfig, train: TrainConfig,
                     db: Path, processes: int) -> list[str]:
    """`torchrun --standalone --nproc_per_node=N -m engine ... train-price ...` for these configs."""
    base = PRESETS[BASE_PRESET]
    sets = [f"--set={f.name}={getattr(model, f.name)}" for f in fields(model)
            if getattr(model, f.name) != getattr(base, f.name)]
    options = {"start": data.start, "end": data.end, "val-fraction": data.val_fraction,
               "test-fraction": data.test_fraction, "epochs": train.epochs, "max-steps": train.max_steps,
               "batch-size": train.batch_size, "grad-accum": train.grad_accum, "lr": train.lr,
               "patience": train.patience, "precision": train.precision, "seed": train.seed,
               "device": train.device, "loss": train.loss}
    return [sys.executable, "-m", "engine.training.launch", "--standalone", f"--nproc_per_node={processes}",
            "-m", "engine", "--db", str(db), "--json", "train-price", *[f"--data={d}" for d in datasets],
            f"--preset={BASE_PRESET}", *sets, *[f"--{k}={v}" for k, v in options.items() if v is not None]]


def torchrun_job(command: list[str], store: RunStore, total_steps: int = 0
                 ) -> Callable[[CancelToken], Generator[Event, None, Finished]]:
    """The job that launches `command` and follows the price run it creates in `store`."""
    return lambda cancel: _follow(command, store, total_steps, cancel)


def _follow(command: list[str], store: RunStore, total_steps: int, cancel: CancelToken
            ) -> Generator[Event, None, Finished]:
    before = {r["run_id"] for r in store.list_runs(kind="price")}
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})
        reader: _MetricReader | None = None
        stop_asked = 0.0
        while True:
            exited = process.poll() is not None
            if cancel.cancelled and not stop_asked and not exited:
                stop_asked = time.monotonic()
                _interrupt(process)
            if stop_asked and not exited and time.monotonic() - stop_asked > GRACE_S:
                _kill_group(process)
            if reader is None and (run_id := _new_run(store, before)):
                reader = _MetricReader(store, run_id)
                yield RunStarted(run_id=run_id, kind="price", total_steps=total_steps,
                                 config=store.get_run(run_id)["config"])
            began = time.monotonic()
            if reader is not None:
                yield from reader.read()
            if exited:
                break
            time.sleep(max(POLL_S, 5 * (time.monotonic() - began)))  # reading costs at most ~1/6 of a core
        _kill_group(process)  # no stray rank outlives its launcher
        output.seek(0)
        log = output.read().decode("utf-8", "replace")
    return _final(store, reader.run_id if reader else "", process.returncode, log, cancel.cancelled)


def _new_run(store: RunStore, before: set[str]) -> str | None:
    """The price run the launch created (the oldest one not in the history before it)."""
    new = [r["run_id"] for r in store.list_runs(kind="price") if r["run_id"] not in before]
    return new[-1] if new else None


def _interrupt(process: subprocess.Popen) -> None:
    """Ctrl+C for the launcher alone: torchrun forwards it once to every worker."""
    if sys.platform == "win32":
        process.terminate()
    else:
        process.send_signal(signal.SIGINT)


def _kill_group(process: subprocess.Popen) -> None:
    if sys.platform == "win32":
        process.kill()
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group may have gone
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


class _MetricReader:
    """Turns the metric rows a run has added to the history since the last read into events."""

    def __init__(self, store: RunStore, run_id: str) -> None:
        self.store, self.run_id = store, run_id
        self.steps_seen = self.evals_seen = 0
        self.best = float("inf")

    def read(self) -> Iterator[Event]:
        series = lambda name: self.store.metric_series(self.run_id, name)
        loss = series("train/loss")[self.steps_seen:]
        if loss:
            by_step = {name: dict(series(f"train/{name}")) for name in ("grad_norm", "lr", "samples_per_s")}
            modules = {n[len(MODULE_PREFIX):]: dict(series(n)) for n in self.store.metric_names(self.run_id)
                       if n.startswith(MODULE_PREFIX)}
            for step, value in loss:
                yield StepEvent(step=step, epoch=0, loss=value, grad_norm=by_step["grad_norm"].get(step, float("nan")),
                                lr=by_step["lr"].get(step, float("nan")),
                                samples_per_s=by_step["samples_per_s"].get(step, 0.0),
                                module_grad_norms={k: v[step] for k, v in modules.items() if step in v})
            self.steps_seen += len(loss)
        for step, value in series("val/loss")[self.evals_seen:]:
            self.evals_seen += 1
            yield EvalEvent(step=step, epoch=0, val_loss=value, is_best=value < self.best)
            self.best = min(self.best, value)


def _final(store: RunStore, run_id: str, code: int, log: str, cancelled: bool) -> Finished:
    """The run's end as recorded by rank 0; a run left "running" by a killed launch is interrupted."""
    if not run_id:
        status = "cancelled" if cancelled else "failed"
        return Finished(run_id="", status=status, error=None if cancelled else
                        f"the torchrun launch ended (exit code {code}) before a run was recorded:\n{log[-4000:]}")
    store.mark_interrupted()
    record = store.get_run(run_id)
    best, last = store.checkpoint(run_id, best=True), store.checkpoint(run_id, best=False)
    status, error = record["status"], record["error"]
    if status not in ("finished", "cancelled", "failed"):
        status, error = "failed", f"the run was left {status} (torchrun exit code {code}):\n{log[-4000:]}"
    return Finished(run_id=run_id, status=status, metrics=record["metrics"] or {}, error=error,
                    best_checkpoint=best and best["path"], last_checkpoint=last and last["path"],
                    step=record["step"] or 0)
