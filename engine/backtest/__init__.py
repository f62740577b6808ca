"""Backtests: daily accounting of positions 0..10, metrics, baselines and signal export."""

from engine.backtest.metrics import compute_metrics
from engine.backtest.run import BacktestResult, backtest_equity, run_backtest, stitch_blocks
from engine.backtest.signals import export_signals

__all__ = ["BacktestResult", "backtest_equity", "compute_metrics", "export_signals", "run_backtest",
           "stitch_blocks"]
