"""A new user's first session, driven through the real main window (issue 18): import a CSV, train
a tiny price run from the wizard, a strategy run on it, cancel a run, backtest two instruments, open
every panel and export signals. While a job runs, something visible must change at least once a
second (a progress count, a step, the status bar): the longest silence is measured and asserted.

Run it under a display as a user sees it (`xvfb-run -a`) or offscreen; it saves two screenshots
(into docs/screenshots/ with QW_SCREENSHOTS=1).
"""

from __future__ import annotations

import gc
import shutil
import time
from dataclasses import replace

import pytest
from PySide6.QtWidgets import QApplication, QFileDialog

from engine.config import BacktestConfig, DataConfig, PriceModelConfig, StrategyLossConfig, StrategyModelConfig
from engine.data.samples import sample_path
from tests.workstation import helpers
from tests.workstation.helpers import fill_train_wizard, screenshot_path, start_wizard
from workstation.wizards.backtest_wizard import BacktestRequest
from workstation.wizards.train_wizard import TrainRequest

MAX_SILENCE_S = 1.0


@pytest.fixture
def own_garbage_only():
    """A user's process does not carry the objects hundreds of earlier tests left in this one: they
    are frozen out of the collector (gc.freeze) so a full collection, which stops every thread, costs
    what it costs the app, not what the test session has piled up."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()

pytestmark = pytest.mark.slow


class Silence:
    """Times between consecutive visible updates while a job runs, per job."""

    def __init__(self, win) -> None:
        self.win, self.last, self.what, self.gaps = win, None, "", []  # gaps: (seconds, job, between what)
        runner = win.runner
        runner.busy_changed.connect(self._busy)
        for signal, what in ((runner.started, "run started"), (runner.progress_changed, "progress"),
                             (runner.evaluated, "evaluation"), (runner.checkpointed, "checkpoint"),
                             (win.statusBar().messageChanged, "status message")):
            signal.connect(lambda *_a, w=what: self.seen(w))
        runner.stepped.connect(lambda _e: self.seen("step"))

    def _busy(self, busy: bool) -> None:
        if busy:
            self.last, self.what = time.monotonic(), "job start"
        else:
            self.seen("finished")
            self.last = None

    def seen(self, what: str) -> None:
        now = time.monotonic()
        if self.last is not None:
            text = self.win.training_panel.phase.text() or self.win.status.job_label.text()
            self.gaps.append((now - self.last, self.win.runner.name, f"{self.what} -> {what} ({text})"))
            self.last, self.what = now, what

    def longest(self) -> tuple[float, str, str]:
        return max(self.gaps)


def wait_job(qtbot, win, timeout_s: float = 240):
    with qtbot.waitSignal(win.runner.finished, timeout=int(timeout_s * 1000)) as done:
        pass
    return done.args[0]


def test_first_session_never_leaves_the_user_waiting_without_news(own_garbage_only, window, qtbot, tmp_path,
                                                                 monkeypatch):
    win, silence = window, Silence(window)
    win.resize(1500, 950)
    # 1. import a CSV (a real series under a user's own file name)
    csv = tmp_path / "GOOG daily.csv"
    shutil.copy(sample_path("goog"), csv)
    assert win.data_panel.import_file(csv) is not None
    # 2. a tiny price run from the wizard, on SSE and the imported file
    monkeypatch.setattr(helpers, "SMALL_DATASET", "sse")
    monkeypatch.setattr(helpers, "SHORT_PERIOD", ("1995-01-01", "2025-08-05"))
    wizard = fill_train_wizard(win, max_steps=6)
    wizard.data_page.set_checked(["sse", str(csv)])
    start_wizard(wizard)
    price = wait_job(qtbot, win)
    assert price.status == "finished", price.error
    # 3. a strategy run on it: the panel follows the new run at once and counts the encoding
    shot: list[bool] = []

    def grab_while_encoding(done: int, total: int, _eta: float) -> None:
        panel = win.training_panel
        encoding = panel.phase.text().startswith("Encoding") and "ETA -" not in panel.eta.text()
        if not shot and encoding and done > total // 3:
            QApplication.processEvents()
            panel.grab().save(str(screenshot_path("training_encoding_progress.png", tmp_path)))
            shot.append(True)

    win.runner.progress_changed.connect(grab_while_encoding)
    chosen = wizard.request()
    request = TrainRequest(["sse", str(csv)], "strategy", price.run_id, DataConfig(), PriceModelConfig(),
                           StrategyModelConfig(state_dim=8), StrategyLossConfig(), chosen.train)
    win.start_training(request)
    strategy = wait_job(qtbot, win)
    assert strategy.status == "finished", strategy.error
    assert shot, "no encoding progress with an ETA was on screen"
    win.runner.progress_changed.disconnect(grab_while_encoding)
    # 4. a run the user cancels
    steps: list = []
    win.runner.stepped.connect(steps.append)
    win.start_training(replace(chosen, datasets=[str(csv)], train=replace(chosen.train, max_steps=5000)))
    qtbot.waitUntil(lambda: len(steps) >= 3, timeout=60_000)
    win.actions_["cancel"].trigger()
    assert wait_job(qtbot, win).status == "cancelled"
    # 5. backtests of the strategy on two instruments (the second queues behind the first)
    win.start_backtest(BacktestRequest(strategy.run_id, "sse", BacktestConfig()))
    win.start_backtest(BacktestRequest(strategy.run_id, "spdb", BacktestConfig()))
    assert wait_job(qtbot, win).status == "finished"
    assert wait_job(qtbot, win).status == "finished"
    # 6. every panel, then the forecast of the price run from a picked day
    for dock in win.docks.values():
        dock.show()
        dock.raise_()
        QApplication.processEvents()
    win.show_forecast(price.run_id)
    panel = win.forecast_panel
    qtbot.waitUntil(lambda: panel.latest is not None)
    panel.pick(len(panel.ws.dates) - 40)
    QApplication.processEvents()
    panel.grab().save(str(screenshot_path("forecast_naive_error.png", tmp_path)))
    # 7. export the shown backtest's signals
    target = tmp_path / "signals.csv"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "CSV files (*.csv)"))
    win.export_signals()
    assert target.is_file() and "Exported" in win.statusBar().currentMessage()
    worst = silence.longest()
    print(f"longest silence while a job ran: {worst[0]:.2f} s in '{worst[1]}' between {worst[2]}; "
          f"{len(silence.gaps)} updates")
    for gap, job, what in sorted(silence.gaps, reverse=True)[:5]:
        print(f"  {gap:.2f} s  {job[:40]}: {what}")
    assert worst[0] <= MAX_SILENCE_S, sorted(silence.gaps, reverse=True)[:5]
