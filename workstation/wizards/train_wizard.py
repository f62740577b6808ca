"""The train wizard: data -> stage -> model -> compute -> review, ending in plain engine configs.

Each page checks the values it holds (isComplete for what can be seen at a glance, validatePage for
what needs work, e.g. building the model on the meta device), so a bad choice is caught where it was
made. Every choice is remembered in QSettings for the next run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyqtgraph as pg
import torch
from PySide6.QtCore import QDate, QSettings, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QButtonGroup,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from engine.config import (
    CONTEXTS,
    HEADS,
    PRECISIONS,
    PRESETS,
    TARGETS,
    DataConfig,
    PriceModelConfig,
    StrategyLossConfig,
    StrategyModelConfig,
    TrainConfig,
    n_features,
    override,
)
from engine.data.io import BarTable, DataImportError
from engine.device import device_choices
from engine.events import CancelToken, Event, Finished
from engine.models import meta_price_model
from engine.store import RunStore
from engine.training.price import price_cut_dates, price_split, price_windows
from workstation.charts import date_plot, fast_curve
from workstation.theme import Palette
from workstation.torchrun import torchrun_command, torchrun_job
from workstation.wizards.estimate import Plan, duration_text, plan, step_seconds
from workstation.wizards.fields import (
    DateField,
    combo,
    dspin,
    error_label,
    remember_fields,
    restore_fields,
    spin,
)

SETTINGS_GROUP = "wizard/train"
STAGES = {"price": "Price network (stage 1)", "strategy": "Strategy network (stage 2, needs a price run)",
          "both": "Both in sequence (price, then strategy on it)"}
MIN_BARS_BEYOND_WINDOW = 100  # a dataset needs the window plus this many bars to yield useful splits


@dataclass
class TrainRequest:
    """Everything the wizard decided, as engine configs."""

    datasets: list[str]
    stage: str  # "price" | "strategy" | "both"
    price_run: str | None
    data: DataConfig
    price_model: PriceModelConfig
    strategy_model: StrategyModelConfig
    strategy_loss: StrategyLossConfig
    train: TrainConfig
    processes: int = 1  # above 1: a torchrun subprocess of the CLI (price stage), followed in the history

    def job(self, store: RunStore) -> Callable[[CancelToken], Generator[Event, None, Finished]]:
        """The generator the JobRunner runs: one stage, or price then strategy on the new price run."""
        if self.processes > 1:
            command = torchrun_command(self.datasets, self.price_model, self.data, self.train, store.path,
                                       self.processes)
            return torchrun_job(command, store, total_steps=self.train.max_steps or 0)

        def run(cancel: CancelToken) -> Generator[Event, None, Finished]:
            price_run = self.price_run
            if self.stage in ("price", "both"):
                from engine.training.price import train_price
                price = yield from train_price(
                    self.datasets, model_cfg=self.price_model, data_cfg=self.data, train_cfg=self.train,
                    store=store, cancel=cancel)
                if price.status != "finished" or self.stage == "price":
                    return price
                price_run = price.run_id
            from engine.training.strategy import train_strategy
            return (yield from train_strategy(
                price_run, self.datasets, model_cfg=self.strategy_model, loss_cfg=self.strategy_loss,
                data_cfg=self.data, train_cfg=self.train, store=store, cancel=cancel))

        return run


def default_threads() -> int:
    """Leave one core to the UI thread, so the window stays responsive while training."""
    return max(1, (os.cpu_count() or 2) - 1)


class DataPage(QWizardPage):
    """Datasets, date range and the chronological split, previewed on a small chart."""

    def __init__(self, sources: list[tuple[str, str]], bars: Callable[[str], BarTable], palette: Palette) -> None:
        super().__init__()
        self.setTitle("Data")
        self.setSubTitle("Choose the instruments to train on, the period, and how much to hold out.")
        self._bars = bars
        self.datasets = QListWidget()
        self.datasets.setToolTip("Several instruments are pooled into one training set")
        for label, source in sources:
            item = QListWidgetItem(label)
            item.setData(Qt.ItemDataRole.UserRole, source)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            self.datasets.addItem(item)
        self.start, self.end = DateField("First bar used (inclusive)"), DateField("Last bar used (inclusive)")
        self.chosen_period: tuple[str, str] | None = None  # kept when the datasets change
        self.val_fraction = dspin(0.0, 0.5, 0.15, "Share of the most recent windows (before test) for "
                                   "validation: early stopping and the best checkpoint use it")
        self.test_fraction = dspin(0.0, 0.5, 0.15, "Share of the most recent windows kept for testing")
        self.train_end, self.val_end = (
            QLineEdit(placeholderText="from the fractions",
                      toolTip=f"YYYY-MM-DD: the last day a {part} target may reach, for every instrument; "
                              "empty: from the fractions of the pooled calendar")
            for part in ("training", "validation"))
        self.context = combo(list(CONTEXTS) + [source for _, source in sources],
                             "Market context beside each instrument: none, the equal-weight index of the chosen "
                             "instruments, or an index dataset (its return and path in its own volatility)")
        self.target = combo(list(TARGETS), "own: each instrument's h-day return; excess: it minus the mean "
                                           "of the chosen instruments that day (for ranking a universe)")
        self.timeline = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem(orientation="bottom")})
        self.timeline.setMouseEnabled(x=False, y=False)
        self.timeline.setMinimumHeight(90)
        self.timeline_parts: dict[str, dict[str, tuple[pd.Timestamp, pd.Timestamp]]] = {}  # drawn regions
        self._part_brushes = {"train": pg.mkBrush(palette.accent + "90"), "val": pg.mkBrush(palette.series[1] + "c0"),
                              "test": pg.mkBrush(palette.down + "c0")}
        self.error = error_label()
        plot = date_plot(pd.DatetimeIndex([]))
        plot.setMouseEnabled(x=True, y=False)
        self.preview = pg.PlotWidget(plotItem=plot)
        self.preview.setMinimumHeight(160)
        self.curve = fast_curve(plot, palette.accent)
        self.val_region = pg.LinearRegionItem(brush=pg.mkBrush(palette.series[1] + "40"), movable=False)
        self.test_region = pg.LinearRegionItem(brush=pg.mkBrush(palette.down + "40"), movable=False)
        for region in (self.val_region, self.test_region):
            plot.addItem(region)
        self._layout()
        self.datasets.itemChanged.connect(self._on_datasets)
        for widget in (self.start, self.end):
            widget.dateChanged.connect(self._update_preview)
            widget.editingFinished.connect(self._keep_period)
        for widget in (self.val_fraction, self.test_fraction):
            widget.valueChanged.connect(self._update_preview)
        for edit in (self.train_end, self.val_end):
            edit.editingFinished.connect(self._update_preview)

    def _layout(self) -> None:
        form = QFormLayout()
        dates = QHBoxLayout()
        dates.addWidget(self.start)
        dates.addWidget(QLabel("to"))
        dates.addWidget(self.end)
        form.addRow("Period", dates)
        form.addRow("Validation fraction", self.val_fraction)
        form.addRow("Test fraction", self.test_fraction)
        form.addRow("Training ends", self.train_end)
        form.addRow("Validation ends", self.val_end)
        form.addRow("Market context", self.context)
        form.addRow("Target", self.target)
        top = QHBoxLayout()
        top.addWidget(self.datasets, 1)
        top.addLayout(form, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(QLabel("Preview of the first dataset: validation (amber) and test (shaded) "
                                "windows, split as training will split them"))
        layout.addWidget(self.preview, 1)
        layout.addWidget(QLabel("Every chosen instrument, cut at the same dates: training, validation (amber) "
                                "and test (red)"))
        layout.addWidget(self.timeline)
        layout.addWidget(self.error)

    def checked(self) -> list[str]:
        items = (self.datasets.item(i) for i in range(self.datasets.count()))
        return [i.data(Qt.ItemDataRole.UserRole) for i in items if i.checkState() == Qt.CheckState.Checked]

    def set_checked(self, sources: list[str]) -> None:
        for i in range(self.datasets.count()):
            item = self.datasets.item(i)
            state = Qt.CheckState.Checked if item.data(Qt.ItemDataRole.UserRole) in sources else Qt.CheckState.Unchecked
            item.setCheckState(state)

    def isComplete(self) -> bool:
        return bool(self.checked())

    def _tables(self) -> list[BarTable]:
        return [self._bars(source) for source in self.checked()]

    def _on_datasets(self) -> None:
        self.completeChanged.emit()
        try:
            tables = self._tables()
        except DataImportError as error:
            self.error.setText(str(error))
            return
        if tables:
            first = min(t.frame.index[0] for t in tables)
            last = max(t.frame.index[-1] for t in tables)
            for edit in (self.start, self.end):
                edit.setDateRange(QDate(first.year, first.month, first.day), QDate(last.year, last.month, last.day))
            start, end = self.chosen_period or (f"{first:%Y-%m-%d}", f"{last:%Y-%m-%d}")
            self.start.setDate(QDate.fromString(start, "yyyy-MM-dd"))  # clamped to the datasets' span
            self.end.setDate(QDate.fromString(end, "yyyy-MM-dd"))
        self._update_preview()

    def _keep_period(self) -> None:
        self.chosen_period = self.period()

    def set_period(self, start: str, end: str) -> None:
        """A period the user chose (or chose last time): kept, within their span, when datasets change."""
        self.chosen_period = (start, end)
        self.start.setDate(QDate.fromString(start, "yyyy-MM-dd"))
        self.end.setDate(QDate.fromString(end, "yyyy-MM-dd"))

    def period(self) -> tuple[str, str]:
        return self.start.date().toString("yyyy-MM-dd"), self.end.date().toString("yyyy-MM-dd")

    def data_config(self) -> DataConfig:
        start, end = self.period()
        return DataConfig(val_fraction=self.val_fraction.value(), test_fraction=self.test_fraction.value(),
                          start=start, end=end, train_end=self.train_end.text().strip() or None,
                          val_end=self.val_end.text().strip() or None, context=self.context.currentText(),
                          target=self.target.currentText())

    def _update_preview(self) -> None:
        """The first dataset's closes, with the window ends the engine's own split puts in validation
        and test (embargo gaps included); no regions where the period is too short to split."""
        sources = self.checked()
        if not sources:
            return
        cfg = self.data_config()
        bars = self._bars(sources[0])
        frame = bars.frame.loc[cfg.start:cfg.end]
        self.preview.getPlotItem().getAxis("bottom").set_dates(frame.index)
        self.curve.setData(np.arange(len(frame), dtype=float), frame["close"].to_numpy(float))
        try:
            split = price_split([bars], cfg)[1]
            parts = (split.val, split.test)
        except ValueError:
            parts = (np.empty((0, 2)), np.empty((0, 2)))
        self._update_timeline(sources, cfg)
        for region, ends in zip((self.val_region, self.test_region), parts):  # ends: (set, day) pairs
            region.setVisible(len(ends) > 0)
            if len(ends):
                region.setRegion((float(ends[0, 1]), float(ends[-1, 1])))
        self.preview.getPlotItem().enableAutoRange()

    def _update_timeline(self, sources: list[str], cfg: DataConfig) -> None:
        """One bar per chosen instrument over its days in the period, coloured by the cut dates the
        run will use (the engine's price_cut_dates over all of them, as training resolves them)."""
        self.timeline.clear()
        self.timeline_parts = {}
        try:
            tables = [self._bars(source) for source in sources]
            cuts = price_cut_dates(price_windows(tables, cfg), cfg)
        except (ValueError, DataImportError) as error:
            self.error.setText(str(error))
            return
        self.error.setText("")
        bounds = {"train": (None, cuts.train_end), "val": (cuts.train_end, cuts.val_end), "test": (cuts.val_end, None)}
        for row, table in enumerate(tables):
            days = table.frame.loc[cfg.start:cfg.end].index
            if not len(days):
                continue
            parts = {}
            for part, (after, upto) in bounds.items():
                inside = days[((days > pd.Timestamp(after)) if after else True) & ((days <= pd.Timestamp(upto)) if upto
                                                                                   else True)]
                if len(inside):
                    parts[part] = (inside[0], inside[-1])
                    x0, x1 = inside[0].timestamp(), inside[-1].timestamp() + 86400
                    self.timeline.addItem(pg.BarGraphItem(x0=[x0], x1=[x1], y=[row], height=0.6,
                                                          brush=self._part_brushes[part], pen=None))
            self.timeline_parts[table.instrument] = parts
            label = pg.TextItem(table.instrument, anchor=(0, 0.5))
            label.setPos(days[0].timestamp(), row)
            self.timeline.addItem(label)
        self.timeline.getPlotItem().getAxis("left").setTicks([[]])
        self.timeline.setYRange(-0.6, len(tables) - 0.4, padding=0)

    def validatePage(self) -> bool:
        start, end = self.period()
        problems = []
        for edit, name in ((self.train_end, "Training ends"), (self.val_end, "Validation ends")):
            if edit.text().strip() and not QDate.fromString(edit.text().strip(), "yyyy-MM-dd").isValid():
                problems.append(f"{name}: {edit.text()!r} is not a date (YYYY-MM-DD).")
        if start >= end:
            problems.append("The period must start before it ends.")
        if self.val_fraction.value() + self.test_fraction.value() > 0.6:
            problems.append("Validation and test together may hold at most 60 % of the windows.")
        if self.val_fraction.value() <= 0:
            problems.append("A validation fraction above 0 is needed for early stopping and the best checkpoint.")
        need = DataConfig().window + DataConfig().horizon + MIN_BARS_BEYOND_WINDOW
        for source in self.checked():
            rows = len(self._bars(source).frame.loc[start:end])
            if rows < need:
                problems.append(f"{source}: {rows} bars in the period, at least {need} needed "
                                f"(a {DataConfig().window}-day window plus room to split).")
        self.error.setText("\n".join(problems))
        return not problems


class StagePage(QWizardPage):
    """Which network to train; stage 2 needs a finished price run from the history."""

    def __init__(self, store: RunStore) -> None:
        super().__init__()
        self.setTitle("Stage")
        self.setSubTitle("The strategy network reads the features of a trained price network.")
        self._store = store
        self.group = QButtonGroup(self)
        layout = QVBoxLayout(self)
        self.buttons: dict[str, QRadioButton] = {}
        for key, text in STAGES.items():
            button = QRadioButton(text)
            self.group.addButton(button)
            self.buttons[key] = button
            layout.addWidget(button)
            button.toggled.connect(self._on_stage)
        self.price_run = combo([], "A finished price run whose checkpoint feeds the strategy network")
        self.run_row = QWidget()
        row = QFormLayout(self.run_row)
        row.addRow("Price run", self.price_run)
        layout.addWidget(self.run_row)
        self.error = error_label()
        layout.addWidget(self.error)
        layout.addStretch(1)
        self.buttons["price"].setChecked(True)

    def initializePage(self) -> None:
        self.price_run.clear()
        for run in self._store.list_runs(kind="price", status="finished"):
            label = " · ".join(str(run.get(k)) for k in ("run_id", "dataset", "started") if run.get(k))
            self.price_run.addItem(label, run["run_id"])
        self._on_stage()

    def stage(self) -> str:
        return next(key for key, button in self.buttons.items() if button.isChecked())

    def _on_stage(self) -> None:
        needs_run = self.stage() == "strategy"
        self.run_row.setVisible(needs_run)
        self.error.setText("No finished price run yet: train the price network first, or choose 'both'."
                           if needs_run and self.price_run.count() == 0 else "")
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        return self.stage() != "strategy" or self.price_run.count() > 0


class ModelPage(QWizardPage):
    """Preset plus the hyper-parameters that matter most; checked by building the model (meta device)."""

    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Model")
        self.setSubTitle("Start from a preset; the fields below override it.")
        self.preset = combo(list(PRESETS), "Sizes of about 2.5M / 10M / 40M / 160M parameters")
        self.d_model = spin(8, 4096, 256, "Width of every token representation", step=8)
        self.n_layers = spin(1, 64, 4, "Number of Transformer blocks")
        self.n_heads = spin(1, 64, 4, "Attention heads")
        self.kv_lora_rank = spin(4, 2048, 64, "MLA: size of the compressed key/value latent (smaller = "
                                  "less memory; DeepSeek uses ~1/4 of the model width)", step=4)
        self.dropout = dspin(0.0, 0.9, 0.1, "Dropout rate (0.1 is a good start; more for small datasets)")
        self.attention = combo(["mla", "mha"], "MLA: multi-head latent attention (compressed K/V, "
                                "decoupled RoPE); MHA: standard multi-head attention")
        self.ffn = combo(["swiglu", "geglu", "moe"], "Feed-forward: SwiGLU, GeGLU, or a mixture of "
                          "SwiGLU experts with a load-balancing loss")
        self.head = combo(list(HEADS), "What the price network predicts per horizon: quantile = 7 quantiles "
                          "(5 %..95 %) of the vol-scaled return, trained with the pinball loss; student_t = a "
                          "Student-t distribution of it (likelihood); point = one value (the loss below)")
        self.loss = combo(["huber", "mse", "mae"], "Point-head loss: Huber is robust to the occasional crash day")
        self.cell = combo(["gru", "lstm"], "Recurrent cell of the strategy network")
        self.state_dim = spin(8, 1024, 64, "Hidden state size of the strategy network", step=8)
        self.risk_aversion = dspin(0.0, 100.0, StrategyLossConfig.risk_aversion,
                                   "Lambda of the mean-variance utility w r - lambda/2 w^2 sigma^2 on daily returns: "
                                   "the best exposure is mu / (lambda sigma^2); higher holds less in volatile "
                                   "markets (3 holds a Sharpe 0.5 market at 16 % volatility fully)", decimals=1,
                                   step=0.5)
        self.error = error_label()
        self.strategy_box = QGroupBox("Strategy network")
        strategy = QFormLayout(self.strategy_box)
        strategy.addRow("Cell", self.cell)
        strategy.addRow("State size", self.state_dim)
        strategy.addRow("Risk aversion (\u03bb)", self.risk_aversion)
        form = QFormLayout()
        for label, widget in (("Preset", self.preset), ("d_model", self.d_model), ("Layers", self.n_layers),
                              ("Heads", self.n_heads), ("KV latent rank", self.kv_lora_rank),
                              ("Dropout", self.dropout), ("Attention", self.attention),
                              ("Feed-forward", self.ffn), ("Output", self.head), ("Point loss", self.loss)):
            form.addRow(label, widget)
        self.price_box = QGroupBox("Price network")
        self.price_box.setLayout(form)
        layout = QHBoxLayout(self)
        layout.addWidget(self.price_box, 1)
        column = QVBoxLayout()
        column.addWidget(self.strategy_box)
        column.addStretch(1)
        column.addWidget(self.error)
        layout.addLayout(column, 1)
        self.preset.currentTextChanged.connect(self.apply_preset)
        self.head.currentTextChanged.connect(self._on_head)

    def initializePage(self) -> None:
        stage = self.wizard().stage_page.stage()
        self.strategy_box.setVisible(stage != "price")
        # Strategy only: the price network is the chosen run's; only the shared dropout still applies.
        for widget in self.price_fields():
            widget.setEnabled(stage != "strategy" or widget is self.dropout)
        self.price_box.setTitle("Price network (fixed: the chosen price run's)" if stage == "strategy"
                                else "Price network")
        self._on_head()

    def _on_head(self) -> None:
        """The point loss matters only to the point head."""
        self.loss.setEnabled(self.head.isEnabled() and self.head.currentText() == "point")

    def price_fields(self) -> list[QWidget]:
        return [self.preset, self.d_model, self.n_layers, self.n_heads, self.kv_lora_rank, self.dropout,
                self.attention, self.ffn, self.head, self.loss]

    def apply_preset(self, name: str) -> None:
        cfg = PRESETS[name]
        for field in ("d_model", "n_layers", "n_heads", "kv_lora_rank"):
            getattr(self, field).setValue(getattr(cfg, field))
        self.dropout.setValue(cfg.dropout)
        self.attention.setCurrentText(cfg.attention)
        self.ffn.setCurrentText(cfg.ffn)

    def price_config(self) -> PriceModelConfig:
        base = PRESETS[self.preset.currentText()]
        d_model = self.d_model.value()
        # The FFN keeps the preset's width ratio so a narrower model stays proportioned.
        ffn_hidden = max(8, round(base.ffn_hidden * d_model / base.d_model / 8) * 8)
        return override(base, d_model=d_model, n_layers=self.n_layers.value(), n_heads=self.n_heads.value(),
                        kv_lora_rank=self.kv_lora_rank.value(), dropout=self.dropout.value(),
                        attention=self.attention.currentText(), ffn=self.ffn.currentText(),
                        ffn_hidden=ffn_hidden, head=self.head.currentText())

    def strategy_config(self) -> StrategyModelConfig:
        return StrategyModelConfig(cell=self.cell.currentText(), state_dim=self.state_dim.value(),
                                   dropout=self.dropout.value())

    def strategy_loss_config(self) -> StrategyLossConfig:
        return StrategyLossConfig(risk_aversion=self.risk_aversion.value())

    def validatePage(self) -> bool:
        try:
            meta_price_model(self.price_config())
        except Exception as error:  # the model's own message says which value is wrong
            self.error.setText(f"This model cannot be built: {error}")
            return False
        self.error.setText("")
        return True


class ComputePage(QWizardPage):
    """Where and how long to train."""

    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Compute")
        self.setSubTitle("Training stops at the first of: epochs done, max steps, or early stopping.")
        defaults = TrainConfig()
        self.device = combo(device_choices(), "auto: the first CUDA GPU if there is one, else the CPU")
        self.precision = combo(list(PRECISIONS), "auto: bf16 where the device supports it; "
                                "fp16 needs CUDA (with loss scaling)")
        self.batch_size = spin(1, 4096, defaults.batch_size, "Windows per optimiser step (before accumulation)")
        self.grad_accum = spin(1, 256, defaults.grad_accum, "Batches accumulated per optimiser step "
                                "(effective batch = batch size x accumulation)")
        self.epochs = spin(1, 1000, defaults.epochs, "Passes over the training windows")
        self.max_steps = spin(0, 10_000_000, 0, "Stop after this many optimiser steps (0: no limit)",
                              special="no limit")
        self.patience = spin(0, 1000, defaults.patience, "Evaluations without validation improvement "
                              "before stopping early (0: never stop early)", special="never")
        self.lr = dspin(1e-6, 1.0, defaults.lr, "Peak learning rate (after warm-up; cosine decay after)",
                         decimals=6, step=1e-4)
        self.seed = spin(0, 2**31 - 1, defaults.seed, "Random seed: the same seed and data give the same run")
        self.threads = spin(1, os.cpu_count() or 1, default_threads(), "CPU threads for training; one core "
                            "is left to the window by default so it stays responsive")
        self.processes = spin(1, 64, 1, "1: train inside the workstation. N > 1: launch N processes with "
                              "torchrun (DistributedDataParallel: one per GPU, or gloo on the CPU with one "
                              "thread each) and follow the run from the history; price network only")
        self.error = error_label()
        form = QFormLayout(self)
        for label, widget in (("Device", self.device), ("Precision", self.precision),
                              ("Batch size", self.batch_size), ("Accumulation", self.grad_accum),
                              ("Epochs", self.epochs), ("Max steps", self.max_steps),
                              ("Early-stopping patience", self.patience), ("Learning rate", self.lr),
                              ("Seed", self.seed), ("CPU threads", self.threads), ("Processes", self.processes)):
            form.addRow(label, widget)
        form.addRow(self.error)

    def config(self, loss: str) -> TrainConfig:
        return TrainConfig(epochs=self.epochs.value(), max_steps=self.max_steps.value() or None,
                           batch_size=self.batch_size.value(), grad_accum=self.grad_accum.value(),
                           lr=self.lr.value(), precision=self.precision.currentText(),
                           device=self.device.currentText(), seed=self.seed.value(),
                           patience=self.patience.value(), loss=loss,
                           num_threads=self.threads.value())

    def validatePage(self) -> bool:
        device, precision = self.device.currentText(), self.precision.currentText()
        problem = ""
        if device.startswith("cuda") and not torch.cuda.is_available():
            problem = "CUDA was chosen but no CUDA GPU is available to this PyTorch build."
        elif precision == "fp16" and not device.startswith("cuda"):
            problem = "fp16 training needs a CUDA GPU; use bf16 or fp32 on this device."
        elif self.processes.value() > 1 and self.wizard().stage_page.stage() != "price":
            problem = "Several processes train the price network only: choose that stage, or 1 process."
        elif self.processes.value() > 1 and device.startswith("cuda") and \
                self.processes.value() > torch.cuda.device_count():
            problem = f"{self.processes.value()} processes need as many GPUs; {torch.cuda.device_count()} found."
        self.error.setText(problem)
        return not problem


class ReviewPage(QWizardPage):
    """Summary, parameter count, memory, windows, steps and a timed estimate before anything starts."""

    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Review")
        self.setSubTitle("Start trains in the background; the Training panel shows it live.")
        self.summary = QLabel()
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.plan: Plan | None = None
        self.time_label = QLabel("Time: not measured yet")
        self.measure_button = QPushButton("Measure a step")
        self.measure_button.setToolTip("Time a few training steps of this model on the chosen device "
                                       "(random inputs) to estimate how long the run takes")
        self.measure_button.clicked.connect(self.measure)
        timing = QHBoxLayout()
        timing.addWidget(self.time_label, 1)
        timing.addWidget(self.measure_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addLayout(timing)
        layout.addStretch(1)

    def measure(self) -> float | None:
        """Seconds per step, timed on the real model; the estimate covers the price stage's steps."""
        request = self.wizard().request()
        QGuiApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            seconds = step_seconds(request.price_model, request.train)
        except Exception as error:  # out of memory, a device that vanished: say so, keep the wizard
            self.time_label.setText(f"Time: could not time a step ({error})")
            return None
        finally:
            QGuiApplication.restoreOverrideCursor()
        steps = self.plan.total_steps if self.plan else 0
        self.time_label.setText(f"Time (rough): {seconds:.3g} s per step x {steps:,} steps ≈ "
                                f"{duration_text(seconds * steps)} plus validation passes")
        return seconds

    def initializePage(self) -> None:
        request = self.wizard().request()
        cfg, train = request.price_model, request.train
        model = meta_price_model(cfg)
        params = model.num_parameters()
        memory = model.training_memory_gb(train.batch_size, train.precision)
        rows = [("Datasets", ", ".join(request.datasets)),
                ("Period", f"{request.data.start} → {request.data.end}"),
                ("Split", f"validation {request.data.val_fraction:.0%}, test {request.data.test_fraction:.0%}"),
                ("Stage", STAGES[request.stage] + (f" ({request.price_run})" if request.stage == "strategy" else "")),
                ("Price network", f"{cfg.attention.upper()}, {cfg.ffn}, d_model {cfg.d_model}, {cfg.n_layers} "
                                  f"layer(s), {cfg.n_heads} head(s), KV rank {cfg.kv_lora_rank}, "
                                  + (f"point output, loss {train.loss}" if cfg.head == "point"
                                     else f"{cfg.head.replace('_', '-')} output")),
                ("Parameters", f"{params:,} (price network)"),
                ("Memory (rough)", f"{memory:.2f} GB at batch {train.batch_size}, {train.precision}"),
                ("Compute", f"{train.device}, {train.precision}, " + (
                    f"{request.processes} processes (torchrun)" if request.processes > 1
                    else f"{train.num_threads} CPU thread(s)")),
                ("Schedule", f"{train.epochs} epoch(s), max steps {train.max_steps or 'no limit'}, batch "
                             f"{train.batch_size} x {train.grad_accum}, lr {train.lr:g}, seed {train.seed}")]
        try:
            self.plan = plan(self.wizard().data_page._tables(), request.data, train)
            p = self.plan
            rows += [("Windows", f"{p.train:,} train, {p.val:,} validation, {p.test:,} test"),
                     ("Steps", f"{p.steps_per_epoch:,} per epoch x {train.epochs} = {p.total_steps:,}"
                               + (" (max steps)" if train.max_steps and p.total_steps == train.max_steps else ""))]
        except ValueError as error:
            self.plan = None
            rows.append(("Windows", f"cannot split: {error}"))
        if request.stage != "price":
            rows.append(("Note", "windows and steps are the price network's; the strategy stage trains on "
                                 "sequences of the same days"))
        self.time_label.setText("Time: press 'Measure a step' for an estimate")
        self.parameters = params
        self.summary.setText("<table cellspacing=6>" + "".join(
            f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in rows) + "</table>")


class TrainWizard(QWizard):
    """Collects a TrainRequest; `request()` is valid once the wizard is accepted."""

    def __init__(self, sources: list[tuple[str, str]], bars: Callable[[str], BarTable], store: RunStore,
                 palette: Palette, parent: QWidget | None = None, selected: str | None = None) -> None:
        super().__init__(parent)
        self._selected = selected  # the data panel's dataset: checked first
        self.setWindowTitle("Train a model")
        self.setWizardStyle(QWizard.WizardStyle.ClassicStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.setButtonText(QWizard.WizardButton.FinishButton, "Start training")
        self.resize(860, 600)
        self.data_page = DataPage(sources, bars, palette)
        self.stage_page = StagePage(store)
        self.model_page = ModelPage()
        self.compute_page = ComputePage()
        self.review_page = ReviewPage()
        for page in (self.data_page, self.stage_page, self.model_page, self.compute_page, self.review_page):
            self.addPage(page)
        self._restore()
        self.accepted.connect(self._remember)

    def request(self) -> TrainRequest:
        data, model, compute = self.data_page, self.model_page, self.compute_page
        stage = self.stage_page.stage()
        data_cfg = data.data_config()
        return TrainRequest(
            datasets=data.checked(), stage=stage,
            price_run=self.stage_page.price_run.currentData() if stage == "strategy" else None,
            data=data_cfg, price_model=override(model.price_config(), n_features=n_features(data_cfg)),
            strategy_model=model.strategy_config(),
            strategy_loss=model.strategy_loss_config(), train=compute.config(model.loss.currentText()),
            processes=compute.processes.value())

    def _fields(self) -> dict[str, QWidget]:
        """Every remembered input, by settings key."""
        m, c, d = self.model_page, self.compute_page, self.data_page
        names = {"preset": m.preset, "d_model": m.d_model, "n_layers": m.n_layers, "n_heads": m.n_heads,
                 "kv_lora_rank": m.kv_lora_rank, "dropout": m.dropout, "attention": m.attention, "ffn": m.ffn,
                 "head": m.head, "loss": m.loss, "cell": m.cell, "state_dim": m.state_dim,
                 "risk_aversion": m.risk_aversion, "device": c.device,
                 "precision": c.precision, "batch_size": c.batch_size, "grad_accum": c.grad_accum,
                 "epochs": c.epochs, "max_steps": c.max_steps, "patience": c.patience, "lr": c.lr,
                 "seed": c.seed, "threads": c.threads, "processes": c.processes, "val_fraction": d.val_fraction,
                 "test_fraction": d.test_fraction, "context": d.context, "target": d.target}
        names.update({f"stage_{k}": b for k, b in self.stage_page.buttons.items()})
        return names

    def _restore(self) -> None:
        if not QSettings().contains(f"{SETTINGS_GROUP}/preset"):
            self.model_page.apply_preset(self.model_page.preset.currentText())
        restore_fields(SETTINGS_GROUP, self._fields())
        remembered = QSettings().value(f"{SETTINGS_GROUP}/datasets", [])
        remembered = [remembered] if isinstance(remembered, str) else list(remembered or [])
        available = [self.data_page.datasets.item(i).data(Qt.ItemDataRole.UserRole)
                     for i in range(self.data_page.datasets.count())]
        chosen = [self._selected] if self._selected in available else [s for s in remembered if s in available]
        period = QSettings().value(f"{SETTINGS_GROUP}/period")
        if isinstance(period, list) and len(period) == 2:
            self.data_page.chosen_period = (str(period[0]), str(period[1]))
        self.data_page.set_checked(chosen or available[:1])

    def _remember(self) -> None:
        remember_fields(SETTINGS_GROUP, self._fields())
        QSettings().setValue(f"{SETTINGS_GROUP}/datasets", self.data_page.checked())
        QSettings().setValue(f"{SETTINGS_GROUP}/period", list(self.data_page.period()))
