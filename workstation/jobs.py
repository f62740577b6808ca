"""Run an engine job (a generator of events) in a QThread and re-emit its events as GUI-thread signals.

The worker only iterates the generator and hands over its return value, the job's result (superqt's
pattern); every signal the rest of the GUI sees comes from JobRunner,
which lives in the GUI thread, so slots run there and `qtbot.waitSignal` works on them. The worker
quits its own thread when the generator ends, so waiting on the thread never needs the GUI event
loop (the quit-from-a-queued-slot deadlock in docs/ENVIRONMENT).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Generator
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from engine.events import (
    CancelToken,
    CheckpointEvent,
    EvalEvent,
    Event,
    Finished,
    Progress,
    RunStarted,
    StepEvent,
    run_to_end,
)
from engine.store import RunStoreError

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.1
Job = Callable[[CancelToken], Generator[Event, None, Any]]
HISTORY_FAULT = "run history "  # how every RunStoreError message starts (RunStore.explain)
HISTORY_ADVICE = ("The run history could not be written. The workstation keeps running and the "
                  "checkpoints already written are kept: free some disk space or fix the folder's "
                  "permissions, then resume the run from the History panel.")


def is_history_fault(error: str | None) -> bool:
    """A job failed because the run history could not be written, not because of the model or data."""
    return HISTORY_FAULT in (error or "")


class _Worker(QObject):
    """Lives in the job thread: pulls events from the generator and hands them, then its result, over."""

    event = Signal(object)
    returned = Signal(object)
    crashed = Signal(str)

    def __init__(self, job: Job, token: CancelToken) -> None:
        super().__init__()
        self._job, self._token = job, token

    @Slot()
    def run(self) -> None:
        try:
            self.returned.emit(run_to_end(self._job(self._token), self.event.emit))
        except RunStoreError as error:  # disk full, folder gone read-only: the message says what to do
            log.error("job stopped: %s", error)
            self.crashed.emit(str(error))
        except ValueError as error:  # the engine refuses bad input (data, dates, checkpoints) with a reason
            log.warning("job refused: %s", error, exc_info=log.isEnabledFor(logging.DEBUG))
            self.crashed.emit(str(error))
        except Exception:  # a bug in a job must reach the user, not kill the thread silently
            log.exception("job crashed")
            self.crashed.emit(traceback.format_exc())
        finally:
            self.thread().quit()


class JobRunner(QObject):
    """Starts one job at a time; every engine event comes back as a GUI-thread signal.

    `finished` fires exactly once per job, with what the job returned (a training run's Finished
    record, a BacktestRecord) or a failed Finished if the generator raised or returned nothing;
    by then the thread has stopped.
    """

    started = Signal(object)  # RunStarted
    stepped = Signal(object)  # StepEvent
    evaluated = Signal(object)  # EvalEvent
    checkpointed = Signal(object)  # CheckpointEvent
    progressed = Signal(object)  # Progress
    progress_changed = Signal(int, int, float)  # done, total, eta seconds (nan unknown)
    finished = Signal(object)  # the job's result, after the thread has stopped
    busy_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: QThread | None = None
        self._worker: _Worker | None = None
        self._token = CancelToken()
        self._final: Any = None
        self.name = ""
        self._total = 0
        self._run_total = 0  # optimiser steps of the running training run
        self._phase: object = None  # "steps", or (message, total) of a Progress phase: each its own ETA
        self._clock: tuple[float, int] | None = None  # (time, count) of the phase's first event
        self._clocks: dict[object, tuple[float, int] | None] = {}  # of phases left, to come back to
        self._last_emit = 0.0

    def is_running(self) -> bool:
        return self._thread is not None

    def start(self, job: Job, name: str) -> None:
        """Run job(cancel_token) in a new thread; one job at a time."""
        if self.is_running():
            raise RuntimeError(f"a job is already running: {self.name}")
        self.name, self._final, self._total, self._clock, self._phase = name, None, 0, None, None
        self._clocks = {}
        self._token = CancelToken()
        self._thread = QThread()
        self._thread.setObjectName(f"job:{name}")
        self._worker = _Worker(job, self._token)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.event.connect(self._on_event)
        self._worker.returned.connect(self._on_returned)
        self._worker.crashed.connect(self._on_crash)
        self._thread.finished.connect(self._on_thread_finished)
        self.busy_changed.emit(True)
        self._thread.start()

    def cancel(self) -> None:
        """Ask the job to stop at its next step; it records itself as cancelled."""
        self._token.cancel()

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Block until the thread has stopped (app shutdown); True when it did."""
        return self._thread is None or self._thread.wait(timeout_ms)

    @Slot(object)
    def _on_event(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._run_total = event.total_steps
            self._clocks.pop("steps", None)  # a new run (e.g. the strategy after the price network)
            self._phase = None
            self._enter("steps", event.total_steps)
            self.started.emit(event)
        elif isinstance(event, StepEvent):
            self._enter("steps", self._run_total)
            self.stepped.emit(event)  # first, as for Progress: the panel leaves the preparation phase
            self._track(event.step)
        elif isinstance(event, EvalEvent):
            self.evaluated.emit(event)
        elif isinstance(event, CheckpointEvent):
            self.checkpointed.emit(event)
        elif isinstance(event, Progress):
            self._enter((event.message, event.total), event.total)
            self.progressed.emit(event)  # first: a listener knows the phase when the count arrives
            self._track(event.done)

    def _enter(self, phase: object, total: int) -> None:
        """Each phase (encoding one instrument, the optimiser steps, a validation pass) has its own
        ETA clock: one phase's rate says nothing about the next's. The steps' clock resumes after a
        validation pass, so their rate includes the passes still to come."""
        if phase != self._phase:
            self._clocks[self._phase] = self._clock
            resumed = self._clocks.get(phase) if phase == "steps" else None  # counts restart otherwise
            self._phase, self._total, self._clock = phase, total, resumed

    @Slot(object)
    def _on_returned(self, result: Any) -> None:
        self._final = result

    def _track(self, done: int) -> None:
        """Emit progress and ETA at most ~10 times a second: labels repaint, and repaints cost."""
        now = time.monotonic()
        if self._clock is None:
            self._clock = (now, done)
        elif now - self._last_emit < PROGRESS_INTERVAL_S and done < self._total:
            return
        self._last_emit = now
        t0, d0 = self._clock
        rate = (done - d0) / (now - t0) if now > t0 and done > d0 else 0.0
        eta = (self._total - done) / rate if rate > 0 and self._total else float("nan")
        self.progress_changed.emit(done, self._total, eta)

    @Slot(str)
    def _on_crash(self, details: str) -> None:
        self._final = Finished(run_id="", status="failed", error=details)

    @Slot()
    def _on_thread_finished(self) -> None:
        self._thread.wait()  # run() has returned; this only joins the OS thread
        self._thread.deleteLater()
        self._worker.deleteLater()
        self._thread = self._worker = None
        final = self._final or Finished(run_id="", status="failed", error="the job ended without a result")
        self.busy_changed.emit(False)
        self.finished.emit(final)
