"""Form fields shared by the wizards: spin boxes, combos and the error label, built one way, and
the value read/write pair that remembers any of them in QSettings."""

from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLabel, QRadioButton, QSpinBox, QWidget


def error_label() -> QLabel:
    """A wrapped label styled as an error (theme role), empty until a page refuses a value."""
    label = QLabel()
    label.setProperty("role", "error")
    label.setWordWrap(True)
    return label


def spin(lo: int, hi: int, value: int, tip: str, step: int = 1) -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setValue(value)
    box.setToolTip(tip)
    return box


def dspin(lo: float, hi: float, value: float, tip: str, decimals: int = 2, step: float = 0.01) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setDecimals(decimals)
    box.setSingleStep(step)
    box.setValue(value)
    box.setToolTip(tip)
    return box


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
