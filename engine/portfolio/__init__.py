"""Portfolios from per-instrument forecasts: construction, risk, backtest and the long signals CSV."""

from engine.portfolio.backtest import Forecasts, Market, PortfolioResult, portfolio_backtest
from engine.portfolio.construct import METHODS, PortfolioConfig, PortfolioWarning
from engine.portfolio.risk import kupiec, ledoit_wolf
from engine.portfolio.signals import export_portfolio_signals, portfolio_signals

__all__ = ["METHODS", "Forecasts", "Market", "PortfolioConfig", "PortfolioResult", "PortfolioWarning",
           "export_portfolio_signals", "kupiec", "ledoit_wolf", "portfolio_backtest", "portfolio_signals"]
