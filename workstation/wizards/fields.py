"""Form fields shared by the wizards: spin boxes, combos and the error label, built one way, and
the value read/write pair that remembers any of them in QSettings."""

from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDateTimeEdit,
    QDoubleSpinBox,
    QLabel,
    QRadioButton,
    QSpinBox,
    QWidget,
)


def error_label() -> QLabel:
    """A wrapped label styled as an error (theme role), empty until a page refuses a value."""
    label = QLabel()
    label.setProperty("role", "error")
    label.setWordWrap(True)
    return label


def spin(lo: int, hi: int, value: int, tip: str, step: int = 1, special: str = "") -> QSpinBox:
    """special: the text shown at the minimum when it means something else (0: "no limit")."""
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setValue(value)
    box.setToolTip(tip)
    box.setSpecialValueText(special)
    return box


def dspin(lo: float, hi: float, value: float, tip: str, decimals: int = 2, step: float = 0.01) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setDecimals(decimals)
    box.setSingleStep(step)
    box.setValue(value)
    box.setToolTip(tip)
    return box


class DateField(QDateEdit):
    """A yyyy-MM-dd date edit that takes a date typed over a selection of the whole text.

    QDateEdit edits one section at a time: typing over a selected date was silently dropped, and a
    typed "-" after a section that filled itself skipped the next one. Both are fixed here."""

    def __init__(self, tip: str = "") -> None:
        super().__init__()
        self.setCalendarPopup(True)
        self.setDisplayFormat("yyyy-MM-dd")
        self.setToolTip(tip)
        self._advanced = False  # the last digit filled its section and moved on to the next

    def keyPressEvent(self, event: QKeyEvent) -> None:
        text, line = event.text(), self.lineEdit()
        if text.isdigit() and len(line.selectedText()) > len("yyyy"):  # more than one section selected
            self.setSelectedSection(QDateTimeEdit.Section.YearSection)
        if text and text in "-/." and self._advanced:
            self._advanced = False
            return
        before = self.currentSectionIndex()
        super().keyPressEvent(event)
        self._advanced = text.isdigit() and self.currentSectionIndex() != before


def combo(items: list[str], tip: str) -> QComboBox:
    box = QComboBox()
    box.addItems(items)
    box.setToolTip(tip)
    return box


def remember_fields(group: str, fields: dict[str, QWidget]) -> None:
    """Save every field under group/key for the next time the form opens."""
    settings = QSettings()
    for key, widget in fields.items():
        settings.setValue(f"{group}/{key}", _value(widget))


def restore_fields(group: str, fields: dict[str, QWidget]) -> None:
    """Put back the values remember_fields saved; fields never saved keep their defaults."""
    settings = QSettings()
    for key, widget in fields.items():
        value = settings.value(f"{group}/{key}")
        if value is not None:
            _set_value(widget, value)


def _value(widget: QWidget):
    if isinstance(widget, QComboBox):
        return widget.currentText()
    if isinstance(widget, (QCheckBox, QRadioButton)):
        return widget.isChecked()
    return widget.value()


def _set_value(widget: QWidget, value) -> None:
    """Restore a remembered value; QSettings returns strings on some platforms, so convert."""
    if isinstance(widget, QComboBox):
        if widget.findText(str(value)) >= 0:
            widget.blockSignals(True)  # a remembered preset must not overwrite remembered fields
            widget.setCurrentText(str(value))
            widget.blockSignals(False)
    elif isinstance(widget, (QCheckBox, QRadioButton)):
        widget.setChecked(value in (True, "true", "1", 1))
    elif isinstance(widget, QDoubleSpinBox):
        widget.setValue(float(value))
    else:
        widget.setValue(int(value))
