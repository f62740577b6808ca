"""The one training loop: events, run records, cancel, failure, early stop, exact resume."""

from __future__ import annotations

import math
import shutil
import threading

import numpy as np
import pytest
import torch
from torch import nn

from engine.checkpoint import load_checkpoint
from engine.config import TrainConfig
from engine.events import (
    CancelToken,
    CheckpointEvent,
    EvalEvent,
    Finished,
    RunStarted,
    StepEvent,
)
from engine.store import RunStore
from engine.training.trainer import (
    TrainStage,
    fit,
    lr_factor,
    module_key,
    resolve_precision,
)


class Toy(nn.Module):
    def __init__(self, dropout: float = 0.2) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 16)
        self.blocks = nn.ModuleList(
            [nn.Sequential(nn.Linear(16, 16), nn.GELU(), nn.Dropout(dropout)) for _ in range(2)])
        self.head = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for block in self.blocks:
            h = h + block(h)
        return self.head(h).squeeze(-1)


class ToyStage(TrainStage):
    """Linear regression with a held-out tail; optional NaN injection and flat validation."""

    kind = "toy"

    def __init__(self, n: int = 64, nan_at_call: int | None = None, stale_val: bool = False) -> None:
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(n + 32, 4)).astype(np.float32)
        self.y = self.x @ np.array([1.0, -2.0, 0.5, 3.0], dtype=np.float32)
        self.n, self.calls, self.nan_at_call, self.stale_val = n, 0, nan_at_call, stale_val
        self.evals = 0
        self.epochs_seen: list[int] = []

    def train_size(self) -> int:
        return self.n

    def batch(self, positions, device):
        return torch.from_numpy(self.x[positions]).to(device), torch.from_numpy(self.y[positions]).to(device)

    def loss(self, model, batch):
        self.calls += 1
        x, y = batch
        loss = ((model(x).float() - y) ** 2).mean()
        if self.calls == self.nan_at_call:
            loss = loss * float("nan")
        return loss, {"mse": loss.detach(), "const": 1.5}

    def evaluate(self, model, device):
        self.evals += 1
        x, y = (torch.from_numpy(a[self.n:]).to(device) for a in (self.x, self.y))
        val = float(((model(x).float() - y) ** 2).mean())
        return (float(self.evals) if self.stale_val else val), {"rmse": math.sqrt(val)}

    def on_epoch_start(self, epoch: int) -> None:
        self.epochs_seen.append(epoch)

    def checkpoint_extra(self):
        return {"target_scale": [2.0]}


def cfg(**kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=16, lr=1e-2, warmup_steps=2, precision="fp32", device="cpu",
                patience=10)
    return TrainConfig(**{**base, **kw})


def train(tmp_path, store=None, model=None, stage=None, config=None, name="run", **kw):
    store = store or RunStore(tmp_path / "r.db")
    run_id = kw.pop("run_id", None) or store.create_run(
        "toy", dataset="toy", fingerprint="f", config={}, seed=0, device="cpu")
    torch.manual_seed(123)
    model = model or Toy()
    events = list(fit(lambda: model, stage or ToyStage(), config or cfg(), store=store, run=run_id,
                      checkpoint_dir=tmp_path / name, **kw))
    return store, run_id, model, events


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


def params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_events_and_run_record(tmp_path):
    stage = ToyStage()
    store, run_id, _, events = train(tmp_path, stage=stage)
    assert isinstance(events[0], RunStarted) and events[0].total_steps == 12
    assert isinstance(events[-1], Finished) and events[-1].status == "finished"
    steps = of(events, StepEvent)
    assert [e.step for e in steps] == list(range(1, 13))
    assert set(steps[0].module_grad_norms) == {"embed", "blocks.0", "blocks.1", "head"}
    total = math.sqrt(sum(v ** 2 for v in steps[0].module_grad_norms.values()))
    assert steps[0].grad_norm == pytest.approx(total, rel=1e-4)
    assert steps[0].extras == {"mse": pytest.approx(steps[0].loss), "const": 1.5}
    assert all(e.samples_per_s > 0 for e in steps) and stage.epochs_seen == [0, 1, 2]
    assert [e.step for e in of(events, EvalEvent)] == [4, 8, 12]
    assert steps[-1].loss < steps[0].loss
    run = store.get_run(run_id)
    assert run["status"] == "finished" and run["step"] == 12 and "rmse" in run["metrics"]
    assert [s for s, _ in store.metric_series(run_id, "train/loss")] == list(range(1, 13))
    assert len(store.metric_series(run_id, "val/loss")) == 3
    assert len(store.metric_series(run_id, "grad_norm/blocks.1")) == 12
    best = store.checkpoint(run_id, best=True)
    assert best["sha256"] == of(events, CheckpointEvent)[-2].sha256
    assert load_checkpoint(best["path"])["extra"]["target_scale"] == [2.0]


def test_metric_rows_are_batched(tmp_path, monkeypatch):
    calls = []
    original = RunStore.log_metrics
    monkeypatch.setattr(RunStore, "log_metrics", lambda s, r, rows: (calls.append(len(rows)), original(s, r, rows)))
    train(tmp_path, config=cfg(epochs=5))
    assert len(calls) <= 5 + 2 and sum(calls) > 20 * 4


def test_same_seed_same_numbers(tmp_path):
    _, _, a, ea = train(tmp_path, name="a")
    _, _, b, eb = train(tmp_path, name="b")
    assert [e.loss for e in of(ea, StepEvent)] == [e.loss for e in of(eb, StepEvent)]
    assert all(torch.equal(x, y) for x, y in zip(params(a), params(b)))


def test_lr_warms_up_then_decays_to_min_ratio(tmp_path):
    store, run_id, _, _ = train(tmp_path, config=cfg(epochs=5, warmup_steps=4, min_lr_ratio=0.1))
    lrs = [v for _, v in store.metric_series(run_id, "train/lr")]
    assert lrs[:4] == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2])
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert lr_factor(20, 20, 4, 0.1) == pytest.approx(0.1)


def test_cancel_from_another_thread_stops_within_one_step(tmp_path):
    token = CancelToken()
    store = RunStore(tmp_path / "r.db")
    run_id = store.create_run("toy", dataset="t", fingerprint="f", config={}, seed=0, device="cpu")
    events = []
    for event in fit(Toy, ToyStage(), cfg(), store=store, run=run_id,
                     checkpoint_dir=tmp_path / "c", cancel=token):
        events.append(event)
        if isinstance(event, StepEvent) and event.step == 6:
            canceller = threading.Thread(target=token.cancel)
            canceller.start()
            canceller.join()
    done = events[-1]
    assert done.status == "cancelled" and done.step == 6
    assert max(e.step for e in of(events, StepEvent)) == 6
    assert load_checkpoint(done.last_checkpoint)["step"] == 6
    assert store.get_run(run_id)["status"] == "cancelled"


def test_abandoned_generator_marks_run_cancelled(tmp_path):
    store = RunStore(tmp_path / "r.db")
    run_id = store.create_run("toy", dataset="t", fingerprint="f", config={}, seed=0, device="cpu")
    gen = fit(Toy, ToyStage(), cfg(), store=store, run=run_id, checkpoint_dir=tmp_path / "c")
    next(gen), next(gen)
    gen.close()
    assert store.get_run(run_id)["status"] == "cancelled"


def test_non_finite_loss_fails_with_step_and_keeps_last_good_checkpoint(tmp_path):
    store, run_id, _, events = train(tmp_path, stage=ToyStage(nan_at_call=6))
    done = events[-1]
    assert done.status == "failed" and "step 6" in done.error
    assert max(e.step for e in of(events, StepEvent)) == 5
    good = load_checkpoint(done.last_checkpoint)
    assert good["step"] == 4 and all(torch.isfinite(t).all() for t in good["model"].values())
    run = store.get_run(run_id)
    assert run["status"] == "failed" and "step 6" in run["error"]


def test_huge_learning_rate_fails_cleanly(tmp_path):
    _, _, _, events = train(tmp_path, config=cfg(lr=1e30, warmup_steps=0, grad_clip=0))
    assert events[-1].status == "failed" and "non-finite" in events[-1].error


def test_early_stopping_uses_validation_loss(tmp_path):
    _, _, _, events = train(tmp_path, stage=ToyStage(stale_val=True), config=cfg(epochs=10, patience=2))
    done = events[-1]
    assert done.status == "finished" and done.early_stopped
    assert [e.is_best for e in of(events, EvalEvent)] == [True, False, False]
    assert load_checkpoint(done.best_checkpoint)["step"] == 4 and done.metrics["best_step"] == 4


def test_gradient_accumulation_matches_the_large_batch(tmp_path):
    def one_step(batch_size, accum, name):
        torch.manual_seed(0)
        model = Toy(dropout=0.0)
        train(tmp_path, model=model, name=name,
              config=cfg(batch_size=batch_size, grad_accum=accum, max_steps=1))
        return params(model)

    for a, b in zip(one_step(32, 1, "big"), one_step(16, 2, "accum")):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("how", ["cancelled mid-epoch", "killed after an evaluation"])
def test_resume_reaches_the_same_final_parameters(tmp_path, how):
    _, _, full, full_events = train(tmp_path, name="full", config=cfg(epochs=4))
    store = RunStore(tmp_path / "r.db")
    run_id = store.create_run("toy", dataset="t", fingerprint="f", config={}, seed=0, device="cpu")
    token = CancelToken()
    torch.manual_seed(123)
    part = Toy()
    gen = fit(lambda: part, ToyStage(), cfg(epochs=4), store=store, run=run_id,
              checkpoint_dir=tmp_path / "part", cancel=token)
    for event in gen:
        if isinstance(event, StepEvent) and event.step == 6 and how == "cancelled mid-epoch":
            token.cancel()
        if isinstance(event, StepEvent) and event.step == 10 and how == "killed after an evaluation":
            store.log_metrics(run_id, [(10, "train/loss", 99.0)])  # rows past the checkpoint
            shutil.copy(tmp_path / "part" / "last.pt", tmp_path / "resume.pt")  # from step 8
            gen.close()
            break
    else:
        shutil.copy(tmp_path / "part" / "last.pt", tmp_path / "resume.pt")
    torch.manual_seed(999)  # a fresh process would not share the first run's RNG state
    resumed = Toy()
    events = list(fit(lambda: resumed, ToyStage(), cfg(epochs=4), store=store, run=run_id,
                      checkpoint_dir=tmp_path / "part", resume_from=tmp_path / "resume.pt"))
    assert events[0].resumed_from_step == load_checkpoint(tmp_path / "resume.pt")["step"]
    assert events[-1].status == "finished" and events[-1].step == 16
    assert all(torch.equal(a, b) for a, b in zip(params(full), params(resumed)))
    assert events[-1].metrics == full_events[-1].metrics | {"train_loss": events[-1].metrics["train_loss"]}
    series = store.metric_series(run_id, "train/loss")
    assert [s for s, _ in series] == list(range(1, 17))
    assert [v for _, v in series] == [e.loss for e in of(full_events, StepEvent)]


def test_unusable_resume_file_fails_the_run(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"junk")
    store, run_id, _, events = train(tmp_path, resume_from=tmp_path / "bad.pt")
    assert len(events) == 1 and events[0].status == "failed" and "bad.pt" in events[0].error
    assert store.get_run(run_id)["status"] == "failed"


def test_auto_precision_trains_in_bf16_on_cpu(tmp_path):
    assert resolve_precision("auto", torch.device("cpu")) == torch.bfloat16
    assert resolve_precision("fp32", torch.device("cpu")) is None
    _, _, _, events = train(tmp_path, config=cfg(precision="auto"))
    assert events[-1].status == "finished" and math.isfinite(events[-1].metrics["val_loss"])


def test_module_grouping():
    assert module_key("blocks.3.attn.wq.weight") == "blocks.3"
    assert module_key("embed.weight") == "embed"
    assert module_key("norm.weight") == "norm"


@pytest.mark.filterwarnings("error")
def test_fp16_with_grad_scaler_skips_overflow_steps_quietly(tmp_path):
    _, _, _, events = train(tmp_path, config=cfg(precision="fp16"))
    assert events[-1].status == "finished" and math.isfinite(events[-1].metrics["val_loss"])
