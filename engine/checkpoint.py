"""Checkpoints that are safe to open from anywhere: plain tensors and Python values only.

Loading uses torch.load(weights_only=True), so a file from an unknown source can never execute code;
anything else in it is reported as a CheckpointError naming the file.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn

from engine.atomic import atomic_write

FORMAT = "quant-workstation-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint, or one made for another model shape."""


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as f:
        return _stream_sha256(f)


def _stream_sha256(f: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: f.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def rng_state() -> dict[str, Any]:
    """Every random stream a training step may draw from, as tensors / plain lists."""
    version, mt, gauss = random.getstate()
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": {"version": version, "state": list(mt), "gauss": gauss},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["gauss"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))


def save_checkpoint(path: str | Path, *, model_state: dict[str, torch.Tensor],
                    optimizer_state: dict | None = None, scheduler_state: dict | None = None,
                    step: int = 0, epoch: int = 0, configs: dict[str, dict] | None = None,
                    extra: dict[str, Any] | None = None, rng: dict[str, Any] | None = None) -> str:
    """Write atomically (temp file, fsync, os.replace): a crash leaves the old file or the new one.

    Returns the sha256 of the written file.
    """
    payload = {
        "format": FORMAT, "version": VERSION, "model": model_state, "optimizer": optimizer_state,
        "scheduler": scheduler_state, "step": int(step), "epoch": int(epoch),
        "configs": configs or {}, "extra": extra or {}, "rng": rng,
    }
    with atomic_write(path, "w+b") as f:
        torch.save(payload, f)
        f.flush()
        f.seek(0)
        return _stream_sha256(f)  # the bytes about to be renamed into place


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint without executing anything in it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... by cause
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: not a valid checkpoint (it cannot be read safely: {reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a quant-workstation checkpoint")
    if int(payload.get("version", 0)) > VERSION:
        raise CheckpointError(f"{path}: checkpoint format {payload['version']} is newer than "
                              f"this program understands ({VERSION})")
    return payload


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """load_state_dict with messages that name the mismatching parameter and both shapes."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        names = ", ".join((missing + unexpected)[:5])
        raise CheckpointError(
            f"{source}: checkpoint is for another model ({len(missing)} parameter(s) missing, "
            f"{len(unexpected)} unexpected, e.g. {names})")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise CheckpointError(
                f"{source}: parameter {name} has shape {tuple(tensor.shape)} in the checkpoint "
                f"but {tuple(own[name].shape)} in the model")
    model.load_state_dict(state)


__all__ = [
    "CheckpointError",
    "file_sha256",
    "load_checkpoint",
    "load_model_state",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]
