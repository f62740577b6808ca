"""A real window on a real X server (Xvfb), not the offscreen platform: it maps, paints and grabs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtGui import QImage

pytestmark = pytest.mark.xvfb

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys
from PySide6.QtCore import QTimer
from workstation.app import create_application
app = create_application([])
from workstation.main_window import MainWindow
win = MainWindow()
win.show()
def grab():
    assert app.platformName() == "xcb", app.platformName()
    win.screen().grabWindow(win.winId()).save(sys.argv[1])
    win.close()
    app.quit()
QTimer.singleShot(2500, grab)
sys.exit(app.exec())
"""


@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="xvfb-run is not installed")
def test_main_window_paints_under_xvfb(tmp_path):
    shot = tmp_path / "main.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "xcb", "QUANT_WORKSTATION_HOME": str(tmp_path / "home"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    result = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", sys.executable, "-c", SCRIPT,
                             str(shot)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    image = QImage(str(shot))
    assert image.width() >= 800 and image.height() >= 500
    pixels = np.frombuffer(image.convertToFormat(QImage.Format.Format_RGB32).constBits(), dtype=np.uint32)
    assert len(np.unique(pixels)) > 50  # candles, text and panels, not a blank frame
