"""The one training loop both stages use; what differs per stage lives in a TrainStage.

`fit` is a generator of engine.events: the CLI prints them, the GUI re-emits them as Qt
signals, tests assert on them. It records the run in the RunStore as it goes (metric rows in
batches, checkpoints with their sha256, heartbeat, final status).
"""

from __future__ import annotations

import contextlib
import errno
import inspect
import logging
import math
import random
import time
import warnings
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from engine.checkpoint import (
    load_checkpoint,
    load_model_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from engine.config import PRECISIONS, TrainConfig
from engine.device import select_device
from engine.events import (
    CancelToken,
    CheckpointEvent,
    EvalEvent,
    Event,
    Finished,
    Progress,
    RunStarted,
    StepEvent,
    run_to_end,
)
from engine.store import RunStore, RunStoreError
from engine.training import distributed
from engine.training.recipe import RunRecipe

log = logging.getLogger(__name__)

HEARTBEAT_S = 30.0
FLUSH_S = 1.0  # metric rows are written at most about once a second ...
FLUSH_ROWS = 2000  # ... or when this many are waiting


class TrainStage(Protocol):
    """What a stage supplies to the loop. Subclass it explicitly to inherit the defaults."""

    kind: str  # "price" | "strategy"

    def train_size(self) -> int:
        """Number of training items; the loop shuffles positions 0..n-1 each epoch."""
        ...

    def batch(self, positions: np.ndarray, device: torch.device) -> Any:
        """Gather the training items at these positions, on the device."""
        ...

    def loss(self, model: nn.Module, batch: Any) -> tuple[Tensor, dict[str, Tensor | float]]:
        """Scalar training loss and named parts to log (tensors stay on the device)."""
        ...

    def evaluate(self, model: nn.Module, device: torch.device) -> tuple[float, dict[str, float]]:
        """Validation loss (early stopping and "best" use it) and metrics; runs under no_grad. A long
        one may be a generator of Progress (per batch) that returns them."""
        ...

    def prepare(self, cancel: CancelToken) -> Iterator[Progress]:
        """Long preparation (encoding features) that runs after the run is recorded and announced,
        so the history and the GUI show the new run at once: Progress per batch, InterruptedError
        once `cancel` is set. train_size must be known before it."""
        return iter(())

    def on_epoch_start(self, epoch: int) -> None:
        """Per-epoch schedules."""

    def on_step(self, step: int, total: int) -> None:
        """Per-step schedules (the strategy's temperature), before optimiser step `step` of `total`."""

    def checkpoint_extra(self) -> dict[str, Any]:
        """Stage values every checkpoint must carry (e.g. the target scale)."""
        return {}


class NonFiniteError(RuntimeError):
    """A loss or gradient became NaN/inf; the message names the step."""


OOM_HINT = ("try a smaller batch size with gradient accumulation (same effective batch), "
            "a smaller model preset, or bf16 precision")


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA raises torch.OutOfMemoryError; MPS and the CPU allocator a RuntimeError saying so."""
    text = str(exc).lower()
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text))


def failure_message(exc: BaseException, step: int, last_checkpoint: str | None) -> str:
    """Why a run failed at `step`, in words a user can act on (what to change, what is kept)."""
    kept = (f"the previous checkpoint is kept: {last_checkpoint}" if last_checkpoint
            else "no checkpoint was written yet")
    if is_out_of_memory(exc):
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # hand the cache back so the app's other work can run
        return f"out of memory at step {step}: {OOM_HINT}; {kept}"
    if isinstance(exc, RunStoreError):
        return f"at step {step}: {exc}"
    if isinstance(exc, OSError):
        target = exc.filename or "a checkpoint"
        if exc.errno == errno.ENOSPC:
            return f"disk full at step {step} while writing {target}: free some space, then resume; {kept}"
        return f"cannot write {target} at step {step} ({exc.strerror or exc}); {kept}"
    return f"{type(exc).__name__}: {exc} (at step {step})"


# devices, precision, seeds -----------------------------------------------------------------------
def to_device(array: np.ndarray, device: torch.device) -> Tensor:
    """Host array to the device; pinned on CUDA so the copy does not stall the step."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype (None: fp32). auto: bf16 on CUDA (fp16 where bf16 is absent) and CPU."""
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "bf16" if device.type == "cpu" else "fp32"
    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        raise ValueError(f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}")
    return dtypes[precision]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine down to min_ratio at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def module_key(name: str) -> str:
    """Gradient-norm group of a parameter: its top-level child, with the index for lists."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 and parts[1].isdigit() else parts[0]


@dataclass
class _Best:
    val: float = math.inf
    step: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    bad_evals: int = 0


class _Loop:
    """State of one fit() call; split into methods so each fits on a screen."""

    def __init__(self, model: nn.Module, stage: TrainStage, cfg: TrainConfig, store: RunStore,
                 run_id: str, checkpoint_dir: Path, cancel: CancelToken | None,
                 configs: dict[str, dict] | None, device: torch.device) -> None:
        self.stage, self.cfg, self.store, self.run_id = stage, cfg, store, run_id
        self.cancel = cancel or CancelToken()
        self.configs = configs or {}
        self.dir = Path(checkpoint_dir)
        # Under torchrun each rank trains its shard of every global batch (distributed.py).
        self.world = distributed.world()
        self.device = distributed.local_device(device)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        if min(stage.train_size(), cfg.batch_size * cfg.grad_accum) < self.world.world_size * cfg.grad_accum:
            raise ValueError(f"batch_size {cfg.batch_size} (global) leaves a rank without data: "
                             f"it must be at least the number of processes ({self.world.world_size})")
        self.model = model.to(self.device).train()
        self.ddp_model = distributed.wrap_model(self.model, self.device)
        self.train_model = torch.compile(self.ddp_model) if cfg.compile else self.ddp_model
        self.stop_agreed = False  # cancellation every rank has seen (distributed runs)
        self.dtype = resolve_precision(cfg.precision, self.device)
        self.scaler = (torch.amp.GradScaler(self.device.type)
                       if self.dtype == torch.float16 else None)
        self.steps_per_epoch = max(1, stage.train_size() // (cfg.batch_size * cfg.grad_accum))
        total = self.steps_per_epoch * cfg.epochs
        self.total_steps = min(total, cfg.max_steps) if cfg.max_steps else total
        self.optimizer = self._optimizer()
        warmup = min(cfg.warmup_steps, self.total_steps // 5)  # short runs still reach full lr
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, self.total_steps, warmup, cfg.min_lr_ratio))
        self.step, self.best = 0, _Best()
        self.resumed_from = 0
        self.rows: list[tuple[int, str, float]] = []
        self.last_flush = self.last_beat = time.monotonic()
        self.first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        self.group_ids: dict[tuple[bool, ...], Tensor] = {}
        self.last_loss = self.step_lr = math.nan

    def _optimizer(self) -> torch.optim.Optimizer:
        groups_fn = getattr(self.model, "optimizer_groups", None)
        groups = (groups_fn(self.cfg.weight_decay) if groups_fn else
                  [{"params": [p for p in self.model.parameters() if p.requires_grad]}])
        return torch.optim.AdamW(groups, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay,
                                 fused=True if self.device.type == "cuda" else None)

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def gradient_sync(self, last_micro_batch: bool) -> contextlib.AbstractContextManager:
        """DDP all-reduces gradients once per optimiser step, after the last micro-batch."""
        no_sync = getattr(self.ddp_model, "no_sync", None)
        return contextlib.nullcontext() if last_micro_batch or no_sync is None else no_sync()

    @property
    def next_epoch(self) -> int:
        """Epoch of the step about to run (epoch_of: of a step already taken)."""
        return self.step // self.steps_per_epoch

    # resume and checkpoints --------------------------------------------------------------------
    def restore(self, path: Path) -> None:
        ckpt = load_checkpoint(path)
        load_model_state(self.model, ckpt["model"], path)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        trainer = ckpt["extra"].get("trainer", {})
        if self.scaler is not None and trainer.get("scaler"):
            self.scaler.load_state_dict(trainer["scaler"])
        self.best = _Best(trainer.get("best_val", math.inf), trainer.get("best_step", 0),
                          dict(trainer.get("best_metrics", {})), trainer.get("bad_evals", 0))
        set_rng_state(ckpt["rng"])
        self.step = self.resumed_from = int(ckpt["step"])
        self.store.truncate_metrics(self.run_id, self.step)

    def save(self, best: bool) -> CheckpointEvent:
        path = self.dir / ("best.pt" if best else "last.pt")
        if not self.world.is_main:  # rank 0 writes the one checkpoint; the others hold the same weights
            return CheckpointEvent(step=self.step, path=str(path), is_best=best)
        trainer = {"best_val": self.best.val, "best_step": self.best.step,
                   "best_metrics": self.best.metrics, "bad_evals": self.best.bad_evals,
                   "scaler": self.scaler.state_dict() if self.scaler is not None else {}}
        sha = save_checkpoint(
            path, model_state=self.model.state_dict(), optimizer_state=self.optimizer.state_dict(),
            scheduler_state=self.scheduler.state_dict(), step=self.step, epoch=self.epoch_of(self.step),
            configs=self.configs, extra={**self.stage.checkpoint_extra(), "trainer": trainer},
            rng=rng_state())
        self.store.add_checkpoint(self.run_id, path, sha, self.step, best)
        return CheckpointEvent(step=self.step, path=str(path), is_best=best, sha256=sha)

    def checkpoint_path(self, best: bool) -> str | None:
        path = self.dir / ("best.pt" if best else "last.pt")
        return str(path) if path.exists() else None

    # one optimiser step ------------------------------------------------------------------------
    def permutation(self, epoch: int) -> np.ndarray:
        """Shuffle from seed + epoch alone, so a resumed run replays the same order."""
        gen = torch.Generator().manual_seed(self.cfg.seed + epoch)
        return torch.randperm(self.stage.train_size(), generator=gen).numpy()

    def optimizer_step(self, perm: np.ndarray) -> tuple[Tensor, list[str], dict[str, float], int]:
        """Accumulate micro-batches, clip, step. Returns logged values still on the device.

        The global batch (batch_size x grad_accum items of the permutation) is cut into grad_accum
        micro-batches; each rank takes its shard of each. A micro-batch's mean loss is weighted by
        its share of the global batch, so DDP's gradient average is the global mean's gradient.
        """
        bs, accum, ranks = self.cfg.batch_size, self.cfg.grad_accum, self.world.world_size
        start = (self.step % self.steps_per_epoch) * bs * accum
        step_items = perm[start:start + bs * accum]
        chunks = [distributed.shard(c) for c in np.array_split(step_items, accum) if len(c)]
        loss_sum, parts, host_parts = None, {}, {}
        for i, positions in enumerate(chunks):
            share = len(step_items) / (len(positions) * ranks)  # len(chunks) without DDP
            with self.gradient_sync(i == len(chunks) - 1):
                with self.autocast():
                    batch = self.stage.batch(positions, self.device)
                    loss, extras = self.stage.loss(self.train_model, batch)
                scaled = loss.float() / share
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            loss_sum = scaled.detach() if loss_sum is None else loss_sum + scaled.detach()
            for k, v in extras.items():
                if isinstance(v, Tensor):
                    parts[k] = parts.get(k, 0) + v.detach().float() / share
                else:
                    host_parts[k] = float(v)
        norms, names = self.clip_and_step()
        finite = torch.isfinite(loss_sum) & (torch.isfinite(norms[0]) if self.scaler is None else True)
        self.first_bad = torch.where((self.first_bad < 0) & ~finite, self.step + 1, self.first_bad)
        stats = torch.cat([loss_sum.view(1), norms] + [v.view(1) for v in parts.values()])
        return stats, ["loss", *names, *list(parts)], host_parts, sum(len(c) for c in chunks)

    def grad_norms(self) -> tuple[Tensor, list[str], list[Tensor]]:
        """[total, per module...] gradient norms in one small tensor (no host sync)."""
        named = [(module_key(n), p) for n, p in self.model.named_parameters() if p.requires_grad]
        present = tuple(p.grad is not None for _, p in named)
        keys = sorted({k for (k, _), ok in zip(named, present) if ok})
        params = [p for (_, p), ok in zip(named, present) if ok]
        if present not in self.group_ids:
            index = {k: i for i, k in enumerate(keys)}
            self.group_ids[present] = torch.tensor(
                [index[k] for (k, _), ok in zip(named, present) if ok], device=self.device)
        squares = torch.stack(torch._foreach_norm([p.grad for p in params])).float().square()
        groups = torch.zeros(len(keys), device=self.device)
        groups.index_add_(0, self.group_ids[present], squares)
        return torch.cat([squares.sum().sqrt().view(1), groups.sqrt()]), keys, params

    def clip_and_step(self) -> tuple[Tensor, list[str]]:
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        norms, keys, params = self.grad_norms()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grads_with_norm_(params, self.cfg.grad_clip, norms[0])
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_lr = self.scheduler.get_last_lr()[0]  # the rate this step used
        with warnings.catch_warnings():  # GradScaler skips overflowing fp16 steps by design
            warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)`")
            self.scheduler.step()
        return norms, ["grad_norm"] + [f"grad_norm/{k}" for k in keys]

    def check_finite(self) -> None:
        bad = int(self.first_bad)
        if bad >= 0:
            raise NonFiniteError(f"non-finite loss or gradient at step {bad}")

    # logging -----------------------------------------------------------------------------------
    def step_event(self, values: dict[str, float], samples_per_s: float) -> StepEvent:
        """Build the StepEvent of the step just taken and queue its metric rows."""
        lr = self.step_lr
        loss = self.last_loss = values.pop("loss")
        grad_norm = values.pop("grad_norm")
        modules = {k.split("/", 1)[1]: values.pop(k) for k in list(values) if k.startswith("grad_norm/")}
        event = StepEvent(step=self.step, epoch=self.epoch_of(self.step), loss=loss,
                          grad_norm=grad_norm, lr=lr, samples_per_s=samples_per_s,
                          module_grad_norms=modules, extras=values)
        self.rows += [(self.step, f"train/{k}", v) for k, v in (
            ("loss", loss), ("grad_norm", grad_norm), ("lr", lr), ("samples_per_s", samples_per_s),
            *values.items())]
        self.rows += [(self.step, f"grad_norm/{k}", v) for k, v in modules.items()]
        return event

    def epoch_of(self, step: int) -> int:
        return max(0, step - 1) // self.steps_per_epoch

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or len(self.rows) >= FLUSH_ROWS or now - self.last_flush >= FLUSH_S:
            self.store.log_metrics(self.run_id, self.rows)
            self.rows, self.last_flush = [], now
        if force or now - self.last_beat >= HEARTBEAT_S:
            self.store.heartbeat(self.run_id, self.step)
            self.last_beat = now

    # evaluation --------------------------------------------------------------------------------
    def evaluate(self) -> Iterator[Event]:
        self.check_finite()
        self.model.eval()
        with torch.no_grad(), self.autocast():
            if self.world.distributed:  # rank 0 evaluates the whole validation set; every rank gets the verdict
                val_loss, metrics = distributed.on_main(lambda m, d: _result(self.stage.evaluate(m, d)),
                                                        self.model, self.device)
            else:  # a stage's evaluate may be a job step: its Progress reaches the screen
                val_loss, metrics = yield from _events_then_result(self.stage.evaluate(self.model, self.device))
        self.model.train()
        if not math.isfinite(val_loss):
            raise NonFiniteError(f"non-finite validation loss at step {self.step}")
        is_best = val_loss < self.best.val
        if is_best:
            self.best = _Best(val_loss, self.step, {"val_loss": val_loss, **metrics}, 0)
        else:
            self.best.bad_evals += 1
        self.rows.append((self.step, "val/loss", val_loss))
        self.rows += [(self.step, f"val/{k}", float(v)) for k, v in metrics.items()
                      if isinstance(v, (int, float))]
        self.flush(force=True)
        yield EvalEvent(step=self.step, epoch=self.epoch_of(self.step), val_loss=val_loss,
                        metrics=metrics, is_best=is_best)
        if is_best:
            yield self.save(best=True)
        yield self.save(best=False)

    def eval_due(self) -> bool:
        every = self.cfg.eval_every or self.steps_per_epoch
        return self.step % every == 0 or self.step == self.total_steps

    @property
    def early_stop(self) -> bool:
        return self.cfg.patience > 0 and self.best.bad_evals >= self.cfg.patience

    def logged(self, stats: Tensor) -> list[float]:
        """Host copy of the logged values, averaged over ranks in the same collective that tells
        every rank whether any was cancelled (ranks must stop at the same step)."""
        if not self.world.distributed:
            return stats.tolist()
        flag = torch.tensor([float(self.cancel.cancelled)], device=stats.device)
        values = distributed.all_reduce_mean(torch.cat([stats.float(), flag])).tolist()
        self.stop_agreed = values.pop() > 0
        return values

    # the loop ----------------------------------------------------------------------------------
    def train(self) -> Iterator[Event]:
        """Yields events; returns the final status ("finished" or "cancelled")."""
        epoch, perm = None, np.empty(0, dtype=np.int64)
        tick, samples = time.perf_counter(), 0
        while self.step < self.total_steps and not self.early_stop:
            if self.stop_agreed or (not self.world.distributed and self.cancel.cancelled):
                self.check_finite()
                yield self.save(best=False)
                return "cancelled"
            if epoch != self.next_epoch:
                epoch = self.next_epoch
                self.stage.on_epoch_start(epoch)
                perm = self.permutation(epoch)
            self.stage.on_step(self.step, self.total_steps)
            stats, names, host, n = self.optimizer_step(perm)
            self.step += 1
            samples += n * self.world.world_size
            if self.step % self.cfg.log_every == 0 or self.step == self.total_steps:
                values = {**dict(zip(names, self.logged(stats))), **host}  # the one sync per logged step
                self.check_finite()
                now = time.perf_counter()
                yield self.step_event(values, samples / max(now - tick, 1e-9))
                tick, samples = now, 0
            self.flush()
            if self.eval_due():
                yield from self.evaluate()
        return "finished"

    def summary(self) -> dict[str, Any]:
        return {**self.best.metrics, "best_step": self.best.step, "steps": self.step,
                "train_loss": self.last_loss}

    def finish(self, status: str, error: str | None = None) -> Finished:
        if status != "failed":
            with contextlib.suppress(Exception):
                self.flush(force=True)
        try:
            self.store.finish_run(self.run_id, status, metrics=self.summary(), error=error,
                                  step=self.step)
        except RunStoreError as exc:  # read-only or full: still end with a Finished event
            log.error("run %s could not be recorded as %s: %s", self.run_id, status, exc)
            status, error = "failed", f"{error}; {exc}" if error else str(exc)
        return Finished(run_id=self.run_id, status=status, metrics=self.summary(),
                        best_checkpoint=self.checkpoint_path(True),
                        last_checkpoint=self.checkpoint_path(False), error=error, step=self.step,
                        early_stopped=status == "finished" and self.early_stop)


def _events_then_result(evaluated: Any) -> Generator[Event, None, Any]:
    """A stage's evaluate returns its result, or is a generator of Progress that returns it."""
    if inspect.isgenerator(evaluated):
        return (yield from evaluated)
    return evaluated


def _result(evaluated: Any) -> Any:
    return run_to_end(evaluated) if inspect.isgenerator(evaluated) else evaluated


@dataclass
class RunEntry:
    """How a job's run enters the history: a new run of `recipe`, or the recorded run `resume`
    continued from its last checkpoint (from scratch, under the same id, if it died before one)."""

    recipe: RunRecipe
    fingerprint: str  # of the data: a resume refuses files that changed
    runs_dir: Path  # checkpoints go to runs_dir / run_id
    resume: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # recorded next to the recipe: the split it used
    parent: str | None = None  # the run that made this one (a rolling retrain's rolling run); None: the price run


def _open_run(store: RunStore, run: str | RunEntry, device: torch.device,
              checkpoint_dir: str | Path | None, resume_from: str | Path | None,
              ) -> tuple[str, Path, Path | None]:
    """Record or claim the run; its id, checkpoint folder and the checkpoint to resume from."""
    if isinstance(run, str):  # a run the caller recorded, with its folder
        store.claim_run(run, device=str(device))
        return run, Path(checkpoint_dir), resume_from and Path(resume_from)
    recipe = run.recipe
    if run.resume is None:
        run_id = distributed.on_main(
            store.create_run, recipe.kind, dataset=", ".join(recipe.datasets),
            fingerprint=run.fingerprint, config={**recipe.to_dict(), **run.facts},
            seed=recipe.train.seed,
            device=str(device), parent_run=run.parent or recipe.price_run)
        return run_id, run.runs_dir / run_id, None
    if store.get_run(run.resume)["fingerprint"] != run.fingerprint:
        raise ValueError(f"run {run.resume}: the data changed since it started "
                         f"({', '.join(recipe.datasets)}); start a new run instead")
    store.claim_run(run.resume, device=str(device))
    start = last_checkpoint(store, run.resume)
    return run.resume, start.parent if start else run.runs_dir / run.resume, start


def fit(build_model: Callable[[], nn.Module], stage: TrainStage, cfg: TrainConfig, *, store: RunStore,
        run: str | RunEntry, checkpoint_dir: str | Path | None = None,
        cancel: CancelToken | None = None, configs: dict[str, dict] | None = None,
        resume_from: str | Path | None = None) -> Generator[Event, None, Finished]:
    """Train the model `build_model` makes on `stage`; returns the Finished record (also yielded last).
    RunStarted comes before the stage's long preparation (stage.prepare), so the run is in the history
    and on screen at once; a cancel during it records the run as cancelled.

    The one place that picks the device, joins torchrun's process group, mutes the history on ranks
    other than 0 and seeds (before the model is built, so a seed gives the same initial weights).
    run: a RunEntry (what the jobs pass), or the id of a run the caller recorded, then with its
    checkpoint_dir and optionally a checkpoint to resume_from.
    configs: plain dicts embedded in every checkpoint (model / data / train configs).
    """
    device = select_device(cfg.device)
    distributed.init_distributed(device)
    store = distributed.main_rank_store(store)
    run_id, folder, resume_from = _open_run(store, run, device, checkpoint_dir, resume_from)
    if resume_from is None:
        seed_everything(cfg.seed)
    try:
        loop = _Loop(build_model(), stage, cfg, store, run_id, folder, cancel, configs, device)
        if resume_from is not None:
            loop.restore(Path(resume_from))
        else:
            store.truncate_metrics(run_id, 0)  # a run restarted from scratch keeps no stale rows
    except Exception as exc:  # the run is already recorded: it must not stay "running"
        error = (failure_message(exc, 0, None) if is_out_of_memory(exc)  # e.g. a large preset
                 else f"{type(exc).__name__}: {exc} (before the first step)")
        store.finish_run(run_id, "failed", error=error)
        finished = Finished(run_id=run_id, status="failed", error=error)
        yield finished
        return finished
    yield RunStarted(run_id=run_id, kind=stage.kind, total_steps=loop.total_steps,
                     config=loop.configs, resumed_from_step=loop.resumed_from)
    try:
        yield from stage.prepare(loop.cancel)
        status = yield from loop.train()
    except InterruptedError:  # cancelled while preparing: no step taken, no checkpoint written
        finished = loop.finish("cancelled")
    except (KeyboardInterrupt, GeneratorExit):
        loop.finish("cancelled")  # checkpoints on disk are the last consistent ones
        raise
    except NonFiniteError as exc:
        last = loop.checkpoint_path(False)
        finished = loop.finish("failed", f"{exc}; last good checkpoint: {last or 'none'}")
    except Exception as exc:
        log.exception("training run %s failed at step %d", run_id, loop.step)
        finished = loop.finish("failed", failure_message(exc, loop.step, loop.checkpoint_path(False)))
    else:
        finished = loop.finish(status)
    yield finished
    return finished


def last_checkpoint(store: RunStore, run_id: str) -> Path | None:
    """The run's last checkpoint to resume from; None if it died before writing one."""
    last = store.checkpoint(run_id, best=False)
    return Path(last["path"]) if last and Path(last["path"]).is_file() else None


__all__ = [
    "OOM_HINT",
    "NonFiniteError",
    "RunEntry",
    "TrainStage",
    "failure_message",
    "fit",
    "is_out_of_memory",
    "last_checkpoint",
    "lr_factor",
    "module_key",
    "resolve_precision",
    "seed_everything",
    "to_device",
]
