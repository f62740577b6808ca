"""The panels' shared layout: a chart and a side part in a splitter, stacked under header rows."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLayout, QSplitter, QVBoxLayout, QWidget

Item = QWidget | QLayout | tuple[QWidget | QLayout, int]  # a tuple gives the item's stretch factor
PANEL_MARGIN = 6


def stack(parent: QWidget, *items: Item, margin: int = 0) -> QVBoxLayout:
    """Lay items out top-down on parent, so every panel and side column stacks the same way."""
    layout = QVBoxLayout(parent)
    layout.setContentsMargins(margin, margin, margin, margin)
    for entry in items:
        item, stretch = entry if isinstance(entry, tuple) else (entry, 0)
        if isinstance(item, QLayout):
            layout.addLayout(item, stretch)
        else:
            layout.addWidget(item, stretch)
    return layout


def column(*items: Item) -> QWidget:
    """A bare widget holding items top-down: the side part of a splitter."""
    widget = QWidget()
    stack(widget, *items)
    return widget


def split(first: QWidget, second: QWidget, sizes: list[int], grow: int = 0,
          orientation: Qt.Orientation = Qt.Orientation.Horizontal) -> QSplitter:
    """Two widgets in a splitter where the one at index grow takes the extra room on resize."""
    splitter = QSplitter(orientation)
    splitter.addWidget(first)
    splitter.addWidget(second)
    splitter.setStretchFactor(grow, 1)
    splitter.setSizes(sizes)
    return splitter


def panel_layout(panel: QWidget, *rows: Item, body: QWidget) -> QVBoxLayout:
    """Header rows above a body that takes all the remaining height, with the panels' margin."""
    return stack(panel, *rows, (body, 1), margin=PANEL_MARGIN)
