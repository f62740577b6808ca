"""Device choices and "auto": what a user is offered is what this machine can use."""

from __future__ import annotations

import pytest
import torch

from engine.device import device_choices, select_device


def _machine(monkeypatch: pytest.MonkeyPatch, cuda: int, mps: bool) -> None:
    """Pretend this machine has `cuda` GPUs and (or not) Apple's MPS."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize(("cuda", "mps", "chosen"), [(2, True, "cuda"), (0, True, "mps"), (0, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, chosen):
    _machine(monkeypatch, cuda, mps)
    assert select_device("auto") == torch.device(chosen)


def test_choices_list_each_gpu_present_and_nothing_absent(monkeypatch):
    _machine(monkeypatch, 2, False)
    assert device_choices() == ["auto", "cpu", "cuda", "cuda:0", "cuda:1"]
    _machine(monkeypatch, 0, True)
    assert device_choices() == ["auto", "cpu", "mps"]


def test_an_absent_or_unknown_device_is_refused_by_name(monkeypatch):
    _machine(monkeypatch, 0, False)
    assert select_device("cpu") == torch.device("cpu")
    for name, reason in (("cuda", "CUDA"), ("cuda:1", "CUDA"), ("mps", "MPS"), ("tpu9", "unknown device")):
        with pytest.raises(ValueError, match=reason):
            select_device(name)
