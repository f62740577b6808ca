"""Soak test (issue 8, not run in CI): train a tiny price model for a long time with the live plots
of the real main window (offscreen) and watch the process memory and the size of the UI's curves.

Traders leave training running overnight: memory that grows per step, or curves that keep every
point forever, would end in a frozen or killed app hours later. This reports the resident memory
(RSS) sampled every --sample-s seconds, its growth after a warm-up sample, and how many points the
loss curve holds against the steps trained. A job that ends (it should not: no early stop) is
restarted, so the window lives through several runs as a user's would.

Run: QT_QPA_PLATFORM=offscreen python benchmarks/soak.py --minutes 30
Exit status 1 when memory grew by more than --max-growth-mb or the curves are unbounded.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication

from engine.config import DataConfig, PriceModelConfig, TrainConfig, override
from engine.events import Finished
from engine.store import RunStore
from workstation import theme
from workstation.main_window import MainWindow
from workstation.wizards.train_wizard import TrainRequest

TINY = override(PriceModelConfig(), d_model=32, n_layers=1, n_heads=2, kv_lora_rank=16,
                qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8, ffn_hidden=64)


def rss_mb() -> float:
    """Current resident memory on Linux; elsewhere the peak (an upper bound of growth)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 1024)


def request() -> TrainRequest:
    """Tiny model, short period, no early stop, an evaluation and checkpoint every 100 steps."""
    train = TrainConfig(epochs=10**6, batch_size=16, lr=1e-3, warmup_steps=10, eval_every=100,
                        patience=0, precision="fp32", device="cpu", num_threads=1)
    return TrainRequest(datasets=["spx"], stage="price", price_run=None,
                        data=DataConfig(start="2015-01-01"), price_model=TINY, strategy_model=None,
                        strategy_loss=None, train=train)


class Soak:
    """Drives the window: keeps a job running, samples memory and curve size on a timer."""

    def __init__(self, window: MainWindow, minutes: float, sample_s: float) -> None:
        self.window, self.sample_s = window, sample_s
        self.deadline = time.monotonic() + minutes * 60
        self.began = time.monotonic()
        self.steps = self.jobs = 0
        self.samples: list[tuple[float, float, int, int]] = []  # (minutes, rss MB, steps, points)
        self.errors: list[str] = []
        window.runner.stepped.connect(self._on_step)
        window.runner.finished.connect(self._on_finished)
        self.timer = QTimer()
        self.timer.timeout.connect(self.sample)
        self.timer.start(int(sample_s * 1000))

    def start_job(self) -> None:
        self.jobs += 1
        self.window.start_training(request())

    def _on_step(self, _event) -> None:
        self.steps += 1

    def _on_finished(self, final: Finished) -> None:
        if final.status == "failed":
            self.errors.append(final.error or "failed")
        if time.monotonic() < self.deadline and not self.errors:
            self.start_job()
        else:
            QApplication.quit()

    def points(self) -> int:
        x, _ = self.window.training_panel.train_curve.getData()
        return 0 if x is None else len(x)

    def sample(self) -> None:
        minutes = (time.monotonic() - self.began) / 60
        self.samples.append((minutes, rss_mb(), self.steps, self.points()))
        print(f"{minutes:6.1f} min  rss {self.samples[-1][1]:8.1f} MB  steps {self.steps:7d}  "
              f"curve points {self.samples[-1][3]:7d}  jobs {self.jobs}", flush=True)
        if time.monotonic() >= self.deadline:
            self.timer.stop()
            self.window.runner.cancel()  # _on_finished quits once the job has stopped


def report(soak: Soak, max_growth_mb: float, max_points: int) -> int:
    if soak.errors:
        print(f"FAIL: a job failed: {soak.errors[0]}")
        return 1
    if len(soak.samples) < 2:
        print("FAIL: fewer than two samples; run longer or sample more often")
        return 1
    minutes, rss = (np.array([s[i] for s in soak.samples]) for i in (0, 1))
    third = max(1, len(rss) // 3)  # medians of the first and last third: RSS jitters by ~20 MB
    growth = float(np.median(rss[-third:]) - np.median(rss[:third]))
    slope = float(np.polyfit(minutes, rss, 1)[0]) * 60 if len(rss) > 2 else float("nan")
    last = soak.samples[-1]
    bounded = last[3] <= max_points or last[3] <= last[2] // 2  # a cap or decimation is at work
    print(f"\nRSS {rss[0]:.1f} -> {rss[-1]:.1f} MB (min {rss.min():.1f}, max {rss.max():.1f}); "
          f"first-third to last-third median growth {growth:+.1f} MB; trend {slope:+.1f} MB/hour; "
          f"{soak.steps} steps in {soak.jobs} job(s) over {minutes[-1]:.1f} min")
    print(f"loss curve: {last[3]} points for {last[2]} steps: "
          + ("bounded" if bounded else f"UNBOUNDED (one point per step, over {max_points})"))
    ok = growth <= max_growth_mb and bounded
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--sample-s", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--max-growth-mb", type=float, default=100.0)
    parser.add_argument("--max-points", type=int, default=20_000,
                        help="most curve points a bounded history may hold")
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="soak-"))
    os.environ["QUANT_WORKSTATION_HOME"] = str(home)
    app = QApplication.instance() or QApplication([])
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(home / "settings"))
    theme.apply(app)
    window = MainWindow(RunStore(home / "runs.db"))
    window.show()
    soak = Soak(window, args.minutes, args.sample_s)
    soak.start_job()
    app.exec()
    window.runner.wait()
    print(f"run history and checkpoints: {home}")
    return report(soak, args.max_growth_mb, args.max_points)


if __name__ == "__main__":
    sys.exit(main())
