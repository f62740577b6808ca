"""Mark live: the dataset a finished run trades each evening and, on a universe, how: each instrument on
its own positions 0..10, or the whole universe as one portfolio of target weights, with the backtest
wizard's construction and cost fields (portfolio_fields).

A portfolio mark's config comes from engine.portfolio.ledger.mark_config, the builder `mark-live
--portfolio` uses, so a mark made here and one made on the command line are the same. A refused value
is said under the form and the dialog stays open.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from engine.data.universe import is_universe
from engine.portfolio.ledger import mark_config
from workstation.wizards.fields import error_label
from workstation.wizards.portfolio_fields import CostFields, PortfolioFields


class MarkLiveDialog(QDialog):
    """Emits mark_requested(dataset, config) on a valid Mark live: config None trades each instrument on
    its own, else it is the portfolio mark's {"portfolio", "backtest"}."""

    mark_requested = Signal(str, object)

    def __init__(self, run_id: str, datasets: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Mark live")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        intro = QLabel(f"Each evening <b>{run_id}</b> scores the latest bar of the dataset below; its targets, "
                       "orders and paper ledger appear in the Ledger panel.")
        intro.setWordWrap(True)
        self.dataset = QComboBox()
        self.dataset.setEditable(True)
        self.dataset.addItems(datasets)
        self.dataset.setToolTip("A sample, a file, a universe (its name, a folder, a vipdoc root, a wide table) "
                                "or one of its members as UNIVERSE:CODE")
        self.single = QRadioButton("each instrument on its own (positions 0..10)")
        self.portfolio = QRadioButton("the universe as one portfolio (target weights)")
        self.single.setChecked(True)
        modes = QButtonGroup(self)
        for button in (self.single, self.portfolio):
            modes.addButton(button)
        self.portfolio_fields, self.costs = PortfolioFields(), CostFields()
        self.settings = QGroupBox("Portfolio construction and costs, as in a portfolio backtest")
        form = QFormLayout(self.settings)
        self.portfolio_fields.add_rows(form)
        self.costs.add_rows(form)
        self.error = error_label()
        top = QFormLayout()
        top.addRow("Dataset", self.dataset)
        top.addRow("Trade", self.single)
        top.addRow("", self.portfolio)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.mark = buttons.addButton("Mark live", QDialogButtonBox.ButtonRole.AcceptRole)
        self.mark.setDefault(True)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(top)
        layout.addWidget(self.settings)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.dataset.currentTextChanged.connect(self._on_dataset)
        self.portfolio.toggled.connect(self.settings.setEnabled)
        self._on_dataset(self.dataset.currentText())
        self.setMinimumWidth(560)

    def _on_dataset(self, text: str) -> None:
        """Only a universe can trade as one portfolio."""
        universe = is_universe(text.strip())
        self.portfolio.setEnabled(universe)
        if not universe:
            self.single.setChecked(True)
        self.settings.setEnabled(self.portfolio.isChecked())
        self.error.clear()

    def request(self) -> tuple[str, dict | None]:
        """(dataset, the mark's config); raises ValueError with what to fix."""
        dataset = self.dataset.currentText().strip()
        if not dataset:
            raise ValueError("Name the dataset the run trades.")
        if not self.portfolio.isChecked():
            return dataset, None
        return dataset, mark_config(dataset, self.portfolio_fields.config(), self.costs.config())

    def accept(self) -> None:
        try:
            dataset, config = self.request()
        except ValueError as error:
            self.error.setText(str(error))
            return
        self.mark_requested.emit(dataset, config)
        super().accept()
