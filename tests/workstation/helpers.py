"""GUI test helpers: the shortest bundled series, a train wizard clicked through, where screenshots go."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtWidgets import QWizard

from workstation.main_window import MainWindow
from workstation.wizards.train_wizard import TrainWizard

SMALL_DATASET = "goog"  # the shortest bundled series: fastest to window
SHORT_PERIOD = ("2009-01-01", "2013-03-01")  # ~1,050 bars: enough windows for a split
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def screenshot_path(name: str, tmp_path: Path) -> Path:
    """docs/screenshots/<name> only when QW_SCREENSHOTS=1 (`QW_SCREENSHOTS=1 ./scripts/test.sh tests/workstation`
    refreshes the README's screenshots), tmp_path/<name> otherwise: a plain run still draws and saves the grab
    but leaves the checkout clean."""
    if os.environ.get("QW_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return SCREENSHOTS / name
    return tmp_path / name


def fill_train_wizard(win: MainWindow, max_steps: int = 10, d_model: int = 32) -> TrainWizard:
    """Open the wizard and click through it with a very small price model on a short period."""
    wizard = win.open_train_wizard()
    data = wizard.data_page
    data.set_checked([SMALL_DATASET])
    data.start.setDate(data.start.date().fromString(SHORT_PERIOD[0], "yyyy-MM-dd"))
    data.end.setDate(data.end.date().fromString(SHORT_PERIOD[1], "yyyy-MM-dd"))
    wizard.next()
    wizard.stage_page.buttons["price"].setChecked(True)
    wizard.next()
    model = wizard.model_page
    model.preset.setCurrentText("tiny")
    model.d_model.setValue(d_model)
    model.n_layers.setValue(1)
    model.n_heads.setValue(2)
    model.kv_lora_rank.setValue(16)
    wizard.next()
    compute = wizard.compute_page
    compute.device.setCurrentText("cpu")
    compute.precision.setCurrentText("fp32")
    compute.batch_size.setValue(16)
    compute.epochs.setValue(1)
    compute.max_steps.setValue(max_steps)
    compute.threads.setValue(1)
    wizard.next()
    assert wizard.currentPage() is wizard.review_page, "a page refused its values"
    return wizard


def start_wizard(wizard: TrainWizard) -> None:
    wizard.button(QWizard.WizardButton.FinishButton).click()


def start_training(win: MainWindow, max_steps: int, **compute: int) -> list:
    """Click the wizard through, override compute-page spin boxes by name, start, and collect the
    StepEvents the runner emits so a test can wait on them."""
    steps: list = []
    win.runner.stepped.connect(steps.append)
    wizard = fill_train_wizard(win, max_steps=max_steps)
    for name, value in compute.items():
        getattr(wizard.compute_page, name).setValue(value)
    start_wizard(wizard)
    assert win.runner.is_running()
    return steps
