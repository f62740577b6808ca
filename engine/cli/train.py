"""Model commands: `describe`, `train-price`, `train-strategy`, `runs`."""

from __future__ import annotations

import argparse
import signal
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import fields, replace
from typing import Any, TypeVar

from engine.cli.core import BadInput, Output, ProgressBar, UsageError, command, iso_date, open_store
from engine.config import (
    HEADS,
    PRECISIONS,
    PRESETS,
    STRATEGY_LOSSES,
    TARGETS,
    DataConfig,
    PriceModelConfig,
    StrategyLossConfig,
    StrategyModelConfig,
    TrainConfig,
    n_features,
    override,
)
from engine.device import DEVICE_HELP
from engine.events import CancelToken, EvalEvent, Event, Finished, Progress, RunStarted, StepEvent, run_to_end
from engine.store import STATUSES

R = TypeVar("R")

EXIT_FOR_STATUS = {"finished": 0, "cancelled": 130, "failed": 1}


def parse_overrides(pairs: list[str], cfg: Any, option: str) -> Any:
    """`--set name=value` pairs applied to a dataclass config, each value parsed as its field's type."""
    types = {f.name: type(getattr(cfg, f.name)) for f in fields(cfg)}
    changes = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or name not in types:
            raise UsageError(f"{option} {pair!r}: expected NAME=VALUE with NAME one of "
                             f"{', '.join(sorted(types))}")
        kind = types[name]
        try:
            changes[name] = (raw.lower() in ("1", "true", "yes")) if kind is bool else kind(raw)
        except ValueError:
            raise UsageError(f"{option} {pair!r}: {raw!r} is not a valid {kind.__name__}") from None
    return override(cfg, **changes)


RUN_FACTS = ("split", "features_from")  # what a training run records next to its recipe


def _data_options(parser: argparse.ArgumentParser, data_help: str, *, required: bool = True) -> None:
    parser.add_argument("--data", action="append", required=required, metavar="D", help=data_help)
    parser.add_argument("--start", type=iso_date, help="first date used (YYYY-MM-DD)")
    parser.add_argument("--end", type=iso_date, help="last date used (YYYY-MM-DD)")
    parser.add_argument("--val-fraction", type=float, default=DataConfig.val_fraction)
    parser.add_argument("--test-fraction", type=float, default=DataConfig.test_fraction)
    parser.add_argument("--train-end", type=iso_date, metavar="D",
                        help="last day a training target may reach, for every instrument "
                             "(default: from the fractions of the pooled calendar)")
    parser.add_argument("--val-end", type=iso_date, metavar="D",
                        help="last day a validation target may reach; the test part starts at "
                             "least the horizon after it")
    parser.add_argument("--no-adjust", dest="adjust", action="store_false",
                        help="keep OHLC as in the file (ignore Adj Close)")


def _train_options(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--grad-accum", type=int, default=defaults.grad_accum)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--patience", type=int, default=defaults.patience,
                        help="evaluations without validation improvement before early stop")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--seeds", type=int, default=1, metavar="N",
                        help="train N runs with seeds seed..seed+N-1 and record their ensemble "
                             "(averaged forecasts or positions) as a run of its own")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--resume", metavar="RUN", help="continue this run from its last checkpoint")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="override a model config field, e.g. --set d_model=64")


def _data_cfg(args: argparse.Namespace) -> DataConfig:
    return DataConfig(val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                      start=args.start, end=args.end, adjust=args.adjust, train_end=args.train_end,
                      val_end=args.val_end)


def _train_cfg(args: argparse.Namespace, **extra: Any) -> TrainConfig:
    for name in ("epochs", "batch_size", "grad_accum"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    return TrainConfig(epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size,
                       grad_accum=args.grad_accum, lr=args.lr, patience=args.patience,
                       precision=args.precision, compile=args.compile, seed=args.seed,
                       device=args.device, **extra)


@contextmanager
def cancel_on_sigint() -> Iterator[CancelToken]:
    """First Ctrl+C asks the job to stop cleanly at the next step (run recorded as cancelled,
    checkpoints intact); a second one interrupts at once."""
    token = CancelToken()

    def handler(signum, frame):
        if token.cancelled:
            raise KeyboardInterrupt
        token.cancel()

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: no signal handling, the token still works
        yield token
        return
    try:
        yield token
    finally:
        signal.signal(signal.SIGINT, previous)


class TrainingProgress:
    """The progress bar of a job's training runs, as run_to_end's on_event: one bar per run the
    job starts (a walk-forward starts one per fold); drawn only on a terminal."""

    def __init__(self, label: str) -> None:
        self.label, self.bar, self.last_val, self.step = label, None, "", 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.close()
            self.bar = ProgressBar(event.total_steps, f"{self.label} {event.run_id}")
            self.step = event.resumed_from_step
        elif isinstance(event, StepEvent) and self.bar is not None:
            self.step = event.step
            self.bar.update(event.step, f"loss {event.loss:.4g} {self.last_val}")
        elif isinstance(event, EvalEvent):
            self.last_val = f"val {event.val_loss:.4g}"
        elif isinstance(event, Progress) and self.bar is not None:  # encoding features, a validation pass
            self.bar.update(self.step, f"{event.message} {event.done:,}/{event.total:,}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> TrainingProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def training_output(finished: Finished, record: dict) -> Output:
    """The run's result and what it recorded about its data (the split, where stage 2's features
    came from)."""
    data = {"run_id": finished.run_id, "status": finished.status,
            "best_checkpoint": finished.best_checkpoint,
            "last_checkpoint": finished.last_checkpoint, "step": finished.step,
            "early_stopped": finished.early_stopped, "error": finished.error,
            "metrics": finished.metrics}
    facts = {key: record["config"][key] for key in RUN_FACTS if key in record["config"]}
    data.update(facts)
    lines = [f"run {finished.run_id}: {finished.status} at step {finished.step}"]
    lines += [f"{part}: {first} .. {last or 'open'}" for part, (first, last) in facts.get("split", {}).items()]
    lines += [f"features of {b['encoded'][0]} .. {b['encoded'][1]} encoded by a price network trained "
              f"to {b['price_train_end']}" for b in facts.get("features_from", [])]
    if finished.error:
        lines.append(f"error: {finished.error}")
    if finished.best_checkpoint:
        lines.append(f"best checkpoint: {finished.best_checkpoint}")
    lines += [f"  {k}: {v:.6g}" if isinstance(v, float) else f"  {k}: {v}"
              for k, v in finished.metrics.items() if not isinstance(v, dict)]
    return Output(data, "\n".join(lines), EXIT_FOR_STATUS.get(finished.status, 1))


# ---------------------------------------------------------------- describe


def _configure_describe(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE")


@command("describe", "build the price model of a preset and print its shape", _configure_describe)
def run_describe(args: argparse.Namespace) -> Output:
    from engine.models import meta_price_model

    cfg = parse_overrides(args.overrides, PRESETS[args.preset], "--set")
    model = meta_price_model(cfg)
    data = {"preset": args.preset, "parameters": model.num_parameters(), "d_model": cfg.d_model,
            "layers": cfg.n_layers, "heads": cfg.n_heads, "attention": cfg.attention,
            "ffn": cfg.ffn, "kv_lora_rank": cfg.kv_lora_rank, "window": cfg.window,
            "horizon": cfg.horizon, "config": vars(cfg)}
    text = (f"{args.preset}: {data['parameters']:,} parameters, d_model {cfg.d_model}, "
            f"{cfg.n_layers} layers, {cfg.n_heads} heads, {cfg.attention.upper()} attention, "
            f"{cfg.ffn} feed-forward, kv_lora_rank {cfg.kv_lora_rank}")
    return Output(data, text)


# ---------------------------------------------------------------- train-price


def _configure_train_price(parser: argparse.ArgumentParser) -> None:
    _data_options(parser, "bundled sample name or file path; repeat to pool instruments")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--head", choices=HEADS, default=PriceModelConfig.head,
                        help="quantile: 7 quantiles of each horizon's vol-scaled return (pinball loss); "
                             "student_t: a Student-t of it (likelihood); point: one value (--loss)")
    parser.add_argument("--loss", choices=["mse", "mae", "huber"], default=TrainConfig.loss,
                        help="the point head's loss")
    parser.add_argument("--context", default=DataConfig.context, metavar="none|equal_weight|DATASET",
                        help="market context beside each instrument: none, the universe's equal-weight index, "
                             "or an index dataset (sample name or file)")
    parser.add_argument("--target", choices=TARGETS, default=DataConfig.target,
                        help="own: each instrument's h-day log return; excess: it minus the universe's mean")
    _train_options(parser)


@command("train-price", "train stage 1, the price network", _configure_train_price)
def run_train_price(args: argparse.Namespace) -> Output:
    from engine.training.price import train_price

    data_cfg = replace(_data_cfg(args), context=args.context, target=args.target)
    model_cfg: PriceModelConfig = parse_overrides(
        args.overrides, override(PRESETS[args.preset], head=args.head, n_features=n_features(data_cfg)), "--set")
    store = open_store(args)
    return _train(args, store, "price", lambda train_cfg, token: train_price(
        args.data, model_cfg=model_cfg, data_cfg=data_cfg, train_cfg=replace(train_cfg, loss=args.loss),
        store=store, resume=args.resume, cancel=token))


# ---------------------------------------------------------------- train-strategy


def _configure_train_strategy(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--price-run", required=True, metavar="RUN",
                        help="finished price run whose best checkpoint gives the frozen features")
    _data_options(parser, "default: the price run's data; given, it must be the same instruments",
                  required=False)
    defaults = StrategyModelConfig()
    parser.add_argument("--cell", choices=["gru", "lstm"], default=defaults.cell)
    parser.add_argument("--head", choices=["gumbel", "straight_through", "concrete"],
                        default=defaults.head)
    parser.add_argument("--cost-bps", type=float, default=StrategyLossConfig.cost_bps)
    parser.add_argument("--loss", dest="strategy_loss", choices=list(STRATEGY_LOSSES), default=StrategyLossConfig.kind,
                        help="utility: mean-variance utility per day; excess: log growth over a regime benchmark")
    parser.add_argument("--risk-aversion", type=float, default=StrategyLossConfig.risk_aversion, metavar="LAMBDA",
                        help="lambda of the utility w r - lambda/2 w^2 sigma^2 on daily returns")
    parser.add_argument("--loss-set", dest="loss_overrides", action="append", default=[],
                        metavar="NAME=VALUE", help="override a strategy-loss weight")
    _train_options(parser)


@command("train-strategy", "train stage 2, the strategy network, on frozen price features",
         _configure_train_strategy)
def run_train_strategy(args: argparse.Namespace) -> Output:
    from engine.training.strategy import train_strategy

    model_cfg = parse_overrides(args.overrides, StrategyModelConfig(cell=args.cell, head=args.head),
                                "--set")
    loss_cfg = parse_overrides(args.loss_overrides, StrategyLossConfig(
        kind=args.strategy_loss, risk_aversion=args.risk_aversion, cost_bps=args.cost_bps), "--loss-set")
    store = open_store(args)
    data_cfg = _data_cfg(args)
    return _train(args, store, "strategy", lambda train_cfg, token: train_strategy(
        args.price_run, args.data or [], model_cfg=model_cfg, loss_cfg=loss_cfg, data_cfg=data_cfg,
        train_cfg=train_cfg, store=store, resume=args.resume, cancel=token))


def _train(args: argparse.Namespace, store: Any, label: str,
           start: Callable[[TrainConfig, CancelToken], Generator[Event, None, Finished]]) -> Output:
    """One run, or with --seeds N the N seed runs and their ensemble: the ensemble's result plus
    "seeds" (each member's run_id, seed, metrics) and "spread" (mean and std of each metric)."""
    from engine.training.ensemble import train_seeds

    if args.seeds < 1:
        raise UsageError("--seeds must be at least 1")
    if args.seeds > 1 and args.resume:
        raise UsageError("--resume continues one run; it cannot be combined with --seeds")
    with cancel_on_sigint() as token, TrainingProgress(label) as progress:
        if args.seeds == 1:
            finished = run_to_end(_bad_input_guard(start(_train_cfg(args), token)), progress)
            return training_output(finished, store.get_run(finished.run_id))
        result = run_to_end(_bad_input_guard(train_seeds(
            lambda seed: start(replace(_train_cfg(args), seed=seed), token), args.seed, args.seeds,
            store)), progress)
    finished = result.ensemble or result.members[-1]
    out = training_output(finished, store.get_run(finished.run_id))
    out.data["seeds"] = [{"run_id": m.run_id, "seed": s, "metrics": m.metrics}
                         for m, s in zip(result.members, result.seeds, strict=True)]
    out.data["spread"] = result.spread
    lines = [f"seed {s}: run {m.run_id} {m.status}" for m, s in zip(result.members, result.seeds, strict=True)]
    lines += [f"  {name}: mean {v['mean']:.6g}, std {v['std']:.6g}" for name, v in result.spread.items()]
    if result.ensemble is None:
        lines.append(f"no ensemble: seed {result.seeds[-1]} did not finish")
    out.text = "\n".join([*lines, out.text])
    return out


def _bad_input_guard(job: Generator[Event, None, R]) -> Generator[Event, None, R]:
    """Jobs raise ValueError for bad input before their run is recorded (RunStarted; a job may say
    it is loading the data first): report it as exit 2."""
    while True:
        try:
            event = next(job)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
        except StopIteration as end:
            return end.value
        yield event
        if isinstance(event, (RunStarted, Finished)):
            return (yield from job)


# ---------------------------------------------------------------- runs


def _configure_runs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=["price", "strategy"])
    parser.add_argument("--status", choices=STATUSES)


@command("runs", "list the run history", _configure_runs)
def run_runs(args: argparse.Namespace) -> Output:
    store = open_store(args)
    runs = [{"run_id": r["run_id"], "kind": r["kind"], "status": r["status"],
             "started": r["started"], "ended": r["ended"], "dataset": r["dataset"],
             "parent_run": r["parent_run"], "step": r["step"], "device": r["device"],
             "metrics": r["metrics"], **{key: r["config"][key] for key in RUN_FACTS if key in r["config"]}}
            for r in store.list_runs(args.kind, args.status)]
    text = "\n".join(f"{r['run_id']:<34} {r['kind']:<9} {r['status']:<11} {r['started'] or '':<20} "
                     f"{r['dataset']}" for r in runs) or f"no runs in {store.path}"
    return Output({"runs": runs, "db": str(store.path)}, text)
