"""Which devices this machine can train on, and the one that "auto" means.

On the ground floor because every floor above places tensors: inference (forecast, policy),
training, and the CLI and the wizard that offer the choices.
"""

from __future__ import annotations

import ctypes
import gc
import sys

import torch

DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps"


def device_choices() -> list[str]:
    """The device names a user may pick here: auto and cpu always, then each GPU that is present."""
    choices = ["auto", "cpu"]
    if torch.cuda.is_available():
        choices += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        choices.append("mps")
    return choices


def select_device(name: str = "auto") -> torch.device:
    """"auto": CUDA, then Apple MPS, then CPU; an explicit device must be usable."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use {DEVICE_HELP}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} requested but MPS is not available on this machine")
    return device


def release_host_memory() -> None:
    """Hand memory freed in bulk (a universe's bar frames once windowed) back to the OS. glibc keeps
    freed blocks of a few hundred KB in its heap, between live ones, so the process's resident size
    stays at its peak and the training that follows adds to it; malloc_trim(0) returns those pages.
    A no-op off glibc (macOS, Windows return large blocks themselves)."""
    gc.collect()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None)  # the process's own symbols: glibc's malloc_trim, absent on musl
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)


__all__ = ["DEVICE_HELP", "device_choices", "release_host_memory", "select_device"]
