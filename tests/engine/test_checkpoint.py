"""Checkpoints: atomic, hash-identified, and never able to run code from an untrusted file."""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from engine.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


def _model(width: int = 4) -> nn.Module:
    return nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, 1))


def test_round_trip_and_sha256(tmp_path):
    model = _model()
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    path = tmp_path / "run" / "last.pt"
    sha = save_checkpoint(path, model_state=model.state_dict(), optimizer_state=opt.state_dict(),
                          step=5, epoch=1, configs={"model": {"d": 4}}, extra={"target_scale": [0.5]},
                          rng=rng_state())
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left behind
    ckpt = load_checkpoint(path)
    assert ckpt["step"] == 5 and ckpt["configs"] == {"model": {"d": 4}}
    assert ckpt["extra"]["target_scale"] == [0.5]
    other = _model()
    load_model_state(other, ckpt["model"], path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    torch.optim.AdamW(other.parameters()).load_state_dict(ckpt["optimizer"])


def test_rng_states_replay_every_stream(tmp_path):
    state = rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    save_checkpoint(tmp_path / "c.pt", model_state={}, rng=state)
    torch.rand(5), np.random.rand(5), random.random()
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]


EVIL_MARKER = "/tmp/should-not-exist-evil-checkpoint"


class _Evil:
    def __reduce__(self):
        return (open, (EVIL_MARKER, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_is_refused_without_running_it(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "quant-workstation-checkpoint", "model": _Evil()}, path)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(path)
    assert not os.path.exists(EVIL_MARKER)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(CheckpointError, match="raw.pt"):
        load_checkpoint(raw)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04broken zip"])
def test_garbage_files_are_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(path)


def test_foreign_torch_file_and_missing_file(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a quant-workstation checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "nope.pt")
    assert issubclass(CheckpointError, ValueError)


def test_truncated_checkpoint_is_refused(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, model_state=_model().state_dict())
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="c.pt"):
        load_checkpoint(path)
    assert not zipfile.is_zipfile(path)


def test_other_model_shape_names_parameter_and_shapes(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, model_state=_model(width=8).state_dict())
    with pytest.raises(CheckpointError, match=r"0\.weight.*\(8, 3\).*\(4, 3\)"):
        load_model_state(_model(width=4), load_checkpoint(path)["model"], path)
    with pytest.raises(CheckpointError, match="another model"):
        load_model_state(nn.Linear(3, 1), load_checkpoint(path)["model"], path)


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "run" / "last.pt"
    sha = save_checkpoint(path, model_state=_model().state_dict(), step=1)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, model_state=_model().state_dict(), step=2)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]
