"""Shared test set-up: Qt offscreen before any Qt import, an isolated run-history folder per test."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
import torch

# Tests share two cores with each other and with Qt: one intra-op thread keeps them predictable.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Every test gets its own run-history folder, so no test touches the user's database."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("QUANT_WORKSTATION_HOME", str(home))
    return home
