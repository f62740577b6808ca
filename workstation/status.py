"""Status bar: which device trains, where the run history lives, and the running job with its ETA."""

from __future__ import annotations

import math

import torch
from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar


def device_summary() -> str:
    """`CUDA:0 <name>, <free>/<total> GB` when a GPU is usable, else `CPU, N threads`."""
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(0)
        return f"CUDA:0 {torch.cuda.get_device_name(0)}, {free / 2**30:.1f}/{total / 2**30:.1f} GB"
    threads = torch.get_num_threads()
    return f"CPU, {threads} thread{'s' if threads != 1 else ''}"


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "ETA --"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"ETA {hours}:{minutes:02d}:{secs:02d}" if hours else f"ETA {minutes}:{secs:02d}"


class StatusBar(QStatusBar):
    """Permanent fields on the right; transient status tips on the left as usual."""

    def __init__(self, db_path: str, parent=None) -> None:
        super().__init__(parent)
        self.job_label = QLabel("")
        self.job_name = ""
        self.progress = QProgressBar()
        self.progress.setFixedWidth(160)
        self.progress.setVisible(False)
        self.eta_label = QLabel("")
        self.eta_label.setMinimumWidth(90)
        self.queue_label = QLabel("")
        self.queue_label.setVisible(False)
        self.db_label = QLabel(f"History: {db_path}")
        self.db_label.setToolTip("The SQLite run history every training run and backtest is recorded in")
        self.device_label = QLabel(device_summary())
        self.device_label.setToolTip("The compute device training uses when the device is 'auto'")
        for widget in (self.job_label, self.progress, self.eta_label, self.queue_label, self.db_label,
                       self.device_label):
            self.addPermanentWidget(widget)

    def job_started(self, name: str) -> None:
        self.job_name = name
        self.job_label.setText(name)
        self.progress.setRange(0, 0)  # busy until the first step says how many there are
        self.progress.setVisible(True)
        self.eta_label.setText(format_eta(float("nan")))

    def job_progress(self, done: int, total: int, eta: float) -> None:
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(min(done, total))
        self.eta_label.setText(format_eta(eta))

    def job_phase(self, text: str) -> None:
        """What a long step-less phase is doing ("Encoding features of SSE (1/3)"); "" when steps run."""
        self.job_label.setText(f"{self.job_name} · {text}" if text else self.job_name)

    def set_queued(self, names: list[str]) -> None:
        """Jobs waiting behind the running one, in the order they will start."""
        self.queue_label.setText(f"Queued: {len(names)}" if names else "")
        self.queue_label.setToolTip("\n".join(f"{i + 1}. {n}" for i, n in enumerate(names)))
        self.queue_label.setVisible(bool(names))

    def job_finished(self, name: str, status: str) -> None:
        self.progress.setVisible(False)
        self.eta_label.setText("")
        self.job_label.setText(f"{name}: {status}")
        self.device_label.setText(device_summary())
