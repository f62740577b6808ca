"""Colours of the workstation: dark (default) or light, and which colour means "up".

Chinese markets paint rising prices red and falling ones green; US users expect the opposite. By
default each chart follows the market of the bars it shows (a BarTable's `market`): red up for
"cn", green up elsewhere; either convention can also be forced everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyqtgraph as pg
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

THEMES = ("dark", "light")
UP_DOWN = {"market": "By market: red up for CN, green up elsewhere",
           "red-up": "Red up, green down everywhere", "green-up": "Green up, red down everywhere"}
RED, GREEN = "#e5484d", "#26a69a"
RED_UP_MARKETS = ("cn",)
# Regime bands: hues of their own, so a band never reads as a rising or falling candle.
REGIME_COLOURS = {"bull": "#6c8ebf", "sideways": "#8b929e", "bear": "#a86cc1"}


@dataclass(frozen=True)
class Palette:
    """Every colour a widget or chart needs, as #rrggbb strings."""

    name: str
    window: str  # panels and dialogs
    base: str  # inputs, lists, chart background
    alt_base: str
    text: str
    muted: str  # secondary text, axes
    border: str
    accent: str  # selection, focus, primary curves
    grid: str
    up: str
    down: str
    warn: str
    error: str
    series: tuple[str, ...]  # extra curves (per-module norms, pooled datasets), all distinct hues
    up_down: str = "market"  # a key of UP_DOWN

    def colours(self, market: str) -> tuple[str, str]:
        """(up, down) for bars of this market under the user's choice."""
        if self.up_down == "market":
            return (RED, GREEN) if market in RED_UP_MARKETS else (GREEN, RED)
        return self.up, self.down


_SERIES = ("#4c9be8", "#f5a623", "#b48ead", "#8fbcbb", "#e06c9f", "#a3be8c", "#ebcb8b", "#88c0d0")


def palette(theme: str = "dark", up_down: str = "market") -> Palette:
    """The palette for a theme name and an up/down choice (unknown names fall back to defaults);
    `up`/`down` are the colours where no market applies (red up only when forced)."""
    up_down = up_down if up_down in UP_DOWN else "market"
    up, down = (RED, GREEN) if up_down == "red-up" else (GREEN, RED)
    if theme == "light":
        return Palette("light", "#f3f4f6", "#ffffff", "#f7f8fa", "#1f2328", "#656d76", "#d0d7de",
                       "#0969da", "#e6e8eb", up, down, "#9a6700", "#cf222e", _SERIES, up_down)
    return Palette("dark", "#1e2127", "#15171c", "#1b1e24", "#d7dae0", "#8b929e", "#343a46",
                   "#4c9be8", "#2a2f38", up, down, "#e0af68", "#f7768e", _SERIES, up_down)


def stylesheet(p: Palette) -> str:
    """A compact Qt stylesheet: flat panels, clear focus, readable tables."""
    return f"""
QWidget {{ color: {p.text}; background: {p.window}; font-size: 10pt; }}
QMainWindow::separator {{ background: {p.border}; width: 1px; height: 1px; }}
QDockWidget::title {{ background: {p.alt_base}; padding: 5px 8px; border-bottom: 1px solid {p.border}; }}
QTabBar::tab {{ background: {p.window}; color: {p.muted}; padding: 6px 14px; border: none; }}
QTabBar::tab:selected {{ color: {p.text}; border-bottom: 2px solid {p.accent}; }}
QLineEdit, QSpinBox, QDoubleSpinBox, QComboBox, QDateEdit, QPlainTextEdit, QTextEdit {{
    background: {p.base}; border: 1px solid {p.border}; border-radius: 3px; padding: 3px 5px; }}
QLineEdit:disabled, QSpinBox:disabled, QDoubleSpinBox:disabled, QComboBox:disabled, QDateEdit:disabled {{
    color: {p.muted}; background: {p.window}; }}
QLineEdit:focus, QSpinBox:focus, QDoubleSpinBox:focus, QComboBox:focus, QDateEdit:focus {{
    border-color: {p.accent}; }}
QListWidget, QTreeWidget, QTableWidget {{ background: {p.base}; alternate-background-color: {p.alt_base};
    border: 1px solid {p.border}; }}
QListWidget::item:selected, QTreeWidget::item:selected {{ background: {p.accent}; color: #ffffff; }}
QHeaderView::section {{ background: {p.alt_base}; color: {p.muted}; border: none;
    border-bottom: 1px solid {p.border}; padding: 4px; }}
QPushButton {{ background: {p.alt_base}; border: 1px solid {p.border}; border-radius: 3px; padding: 5px 12px; }}
QPushButton:hover {{ border-color: {p.accent}; }}
QPushButton:disabled {{ color: {p.muted}; }}
QPushButton[primary="true"] {{ background: {p.accent}; color: #ffffff; border-color: {p.accent}; }}
QProgressBar {{ background: {p.base}; border: 1px solid {p.border}; border-radius: 3px; text-align: center;
    min-height: 14px; }}
QProgressBar::chunk {{ background: {p.accent}; }}
QStatusBar {{ background: {p.alt_base}; border-top: 1px solid {p.border}; }}
QStatusBar QLabel {{ background: transparent; color: {p.muted}; padding: 0 6px; }}
QMenuBar {{ background: {p.alt_base}; }}
QMenuBar::item:selected, QMenu::item:selected {{ background: {p.accent}; color: #ffffff; }}
QMenu {{ background: {p.base}; border: 1px solid {p.border}; }}
QMenu::item:disabled, QMenuBar::item:disabled {{ color: {p.muted}; }}
QMenu::item:disabled:selected {{ background: {p.alt_base}; color: {p.muted}; }}
QGroupBox {{ border: 1px solid {p.border}; border-radius: 4px; margin-top: 12px; padding-top: 6px; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 8px; color: {p.muted}; }}
QLabel[role="banner-error"] {{ background: {p.error}; color: #ffffff; padding: 6px 10px; border-radius: 3px; }}
QLabel[role="banner-warn"] {{ background: {p.warn}; color: #000000; padding: 6px 10px; border-radius: 3px; }}
QLabel[role="muted"] {{ color: {p.muted}; }}
QLabel[role="error"] {{ color: {p.error}; }}
QCheckBox::indicator, QListWidget::indicator, QTreeWidget::indicator, QRadioButton::indicator {{
    width: 12px; height: 12px; border: 1px solid {p.muted}; background: {p.base}; border-radius: 2px; }}
QRadioButton::indicator {{ border-radius: 7px; }}
QCheckBox::indicator:checked, QListWidget::indicator:checked, QTreeWidget::indicator:checked,
QRadioButton::indicator:checked {{ background: {p.accent}; border-color: {p.accent}; }}
QToolTip {{ background: {p.base}; color: {p.text}; border: 1px solid {p.border}; }}
"""


def apply(app: QApplication, theme: str = "dark", up_down: str = "market") -> Palette:
    """Theme the whole application (Qt palette, stylesheet, pyqtgraph defaults); returns the palette."""
    p = palette(theme, up_down)
    qp = QPalette()
    for role, colour in ((QPalette.Window, p.window), (QPalette.Base, p.base), (QPalette.Text, p.text),
                         (QPalette.WindowText, p.text), (QPalette.Button, p.alt_base),
                         (QPalette.ButtonText, p.text), (QPalette.Highlight, p.accent),
                         (QPalette.AlternateBase, p.alt_base), (QPalette.ToolTipBase, p.base),
                         (QPalette.ToolTipText, p.text), (QPalette.PlaceholderText, p.muted)):
        qp.setColor(role, QColor(colour))
    app.setPalette(qp)
    app.setStyleSheet(stylesheet(p))
    pg.setConfigOptions(background=p.base, foreground=p.muted, antialias=False)
    return p
