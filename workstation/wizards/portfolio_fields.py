"""The fields of a portfolio's construction and of its trading costs, built once: the backtest wizard's
portfolio and costs pages and the Mark live dialog lay out the same widgets (ranges, defaults, tips)
and read them into the same configs, so a portfolio marked live trades as its backtest did.

Each group owns its widgets and adds them as rows to the caller's QFormLayout (one label column per
page); `config()` reads them into the engine's dataclass."""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QFormLayout

from engine.config import FILLS, BacktestConfig
from engine.portfolio import METHODS, PortfolioConfig
from workstation.wizards.fields import combo, dspin, spin


class PortfolioFields:
    """How a universe's forecasts become one book (engine.portfolio.PortfolioConfig)."""

    def __init__(self) -> None:
        d = PortfolioConfig()
        self.method = combo(METHODS, "topk: equal weights on the k best scores; inverse_vol: the k best by inverse "
                                     "volatility; score: the k best by their score; mean_variance: the forecast "
                                     "means on a Ledoit-Wolf covariance (falls back to topk when infeasible)")
        self.method.setCurrentText(d.method)
        self.top_k = spin(1, 500, d.top_k, "How many names the book holds at most")
        self.rebalance = spin(1, 250, d.rebalance, "Days between decisions")
        self.band = dspin(0.0, 1.0, 0.0, "Also rebalance as soon as a weight drifts this far from its target "
                          "(0: off)", decimals=2, step=0.01)
        self.max_weight = dspin(0.01, 1.0, d.max_weight, "Largest weight of one name", decimals=2, step=0.05)
        self.min_cash = dspin(0.0, 0.99, d.min_cash, "Share of the book always kept in cash", decimals=2, step=0.05)
        self.max_turnover = dspin(0.0, 2.0, 0.0, "mean_variance: at most this sum of |new - held weight| per "
                                  "decision (0: no bound)", decimals=2, step=0.05)
        self.max_turnover.setSpecialValueText("no bound")
        self.method.currentTextChanged.connect(lambda method: self.max_turnover.setEnabled(method == "mean_variance"))
        self.max_turnover.setEnabled(d.method == "mean_variance")

    def add_rows(self, form: QFormLayout) -> None:
        for label, widget in (("Method", self.method), ("Top k", self.top_k),
                              ("Rebalance every (days)", self.rebalance), ("Drift band", self.band),
                              ("Max weight", self.max_weight), ("Min cash", self.min_cash),
                              ("Max turnover", self.max_turnover)):
            form.addRow(label, widget)

    def config(self) -> PortfolioConfig:
        """The fields as a PortfolioConfig (a bad combination raises ValueError); 0 turns a bound off."""
        return PortfolioConfig(method=self.method.currentText(), top_k=self.top_k.value(),
                               rebalance=self.rebalance.value(), band=self.band.value() or None,
                               max_weight=self.max_weight.value(), min_cash=self.min_cash.value(),
                               max_turnover=self.max_turnover.value() or None)


class CostFields:
    """When trades fill, what they cost and whether the A-share rules apply (the BacktestConfig fields a
    live portfolio trades with; the wizard adds the price limit and the reporting fields)."""

    def __init__(self) -> None:
        d = BacktestConfig()
        self.fill = combo(FILLS, "When a decision taken at a close trades: at the next open, or at that close "
                                 "(market-on-close); data without opens fill at the close")
        self.fill.setCurrentText(d.fill)
        self.cost_bps = dspin(0.0, 500.0, d.cost_bps, "Commission and fees in basis points per unit "
                              "of turnover (a position change of 10 = one unit)", decimals=1, step=1.0)
        self.slippage_bps = dspin(0.0, 500.0, d.slippage_bps, "Extra cost of trading at a worse price "
                                  "than the fill price, in basis points", decimals=1, step=1.0)
        self.stamp_duty_bps = dspin(0.0, 100.0, d.stamp_duty_bps, "Tax on sales only, in basis points "
                                    "(A-shares: 5 since 2023-08-28, 10 before)", decimals=1, step=1.0)
        self.ashare = QCheckBox("A-share rules")
        self.ashare.setToolTip("No buying at a limit-up fill, no selling at a limit-down fill (T+1 holds "
                               "by construction: positions change once a day)")

    def add_rows(self, form: QFormLayout) -> None:
        for label, widget in (("Fill", self.fill), ("Cost (bps)", self.cost_bps),
                              ("Slippage (bps)", self.slippage_bps), ("Stamp duty (bps)", self.stamp_duty_bps),
                              ("", self.ashare)):
            form.addRow(label, widget)

    def config(self, **rest) -> BacktestConfig:
        """The fields as a BacktestConfig; `rest`: the other fields (limit, period, reporting)."""
        return BacktestConfig(fill=self.fill.currentText(), cost_bps=self.cost_bps.value(),
                              slippage_bps=self.slippage_bps.value(), stamp_duty_bps=self.stamp_duty_bps.value(),
                              ashare_rules=self.ashare.isChecked(), **rest)
