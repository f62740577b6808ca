"""`--seeds N`: N ordinary runs of one recipe with seeds seed..seed+N-1, then a seed ensemble recorded
as a run of the same kind, so its id works wherever a run id does (forecast, backtest, evaluate, the
GUI).

The ensemble run writes no weights: its best checkpoint is a small file naming each member's
checkpoint and sha256 (engine.forecast / engine.policy load and check the members from it). A
price ensemble averages the members' forecasts; a strategy ensemble averages their positions
(rounded to 0..10), and its members must read the same price run (which may be a price ensemble).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np

from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.events import Event, Finished
from engine.store import RunStore


@dataclass
class SeedsResult:
    members: list[Finished]  # in seed order; the last one stopped the series when it did not finish
    seeds: list[int]
    ensemble: Finished | None  # None for one seed, or when a member did not finish (nothing to average)

    @property
    def spread(self) -> dict[str, dict[str, float]]:
        return metric_spread([m.metrics for m in self.members])


def metric_spread(metrics: list[dict]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation (0 for one member) of every numeric metric all members
    report: how much a figure owes to the seed."""
    names = [k for k, v in metrics[0].items() if isinstance(v, int | float) and not isinstance(v, bool)]
    out = {}
    for name in names:
        if all(isinstance(m.get(name), int | float) for m in metrics):
            values = np.array([m[name] for m in metrics], dtype=np.float64)
            out[name] = {"mean": float(values.mean()),
                         "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    return out


def train_seeds(make_job: Callable[[int], Generator[Event, None, Finished]], seed: int, n: int,
                store: RunStore) -> Generator[Event, None, SeedsResult]:
    """Run make_job(seed + i) for i < n one after the other (each an ordinary run in the history);
    when all finish and there are several, record their ensemble. A member that fails or is
    cancelled stops the series."""
    if n < 1:
        raise ValueError("--seeds must be at least 1")
    members: list[Finished] = []
    seeds = list(range(seed, seed + n))
    for s in seeds:
        members.append((yield from make_job(s)))
        if members[-1].status != "finished":
            return SeedsResult(members, seeds[:len(members)], None)
    ensemble = record_ensemble(store, [m.run_id for m in members], seeds) if n > 1 else None
    return SeedsResult(members, seeds, ensemble)


def record_ensemble(store: RunStore, member_ids: list[str], seeds: list[int] | None = None) -> Finished:
    """Record finished runs of one kind, data and price run as their seed ensemble; ValueError when
    they do not form one (another kind or dataset, unfinished, no best checkpoint, or strategies
    on different price runs)."""
    records = [store.get_run(run_id) for run_id in member_ids]
    missing = [run_id for run_id, r in zip(member_ids, records, strict=True) if r is None]
    if missing or not records:
        raise ValueError(f"no run {', '.join(missing)} in {store.path}" if missing else "no members")
    first = records[0]
    for key, what in (("kind", "kind"), ("dataset", "data"), ("parent_run", "price run")):
        if len({r[key] for r in records}) > 1:
            raise ValueError(f"an ensemble's members must share one {what}: "
                             f"{', '.join(str(r[key]) for r in records)}")
    best = [store.checkpoint(run_id, best=True) for run_id in member_ids]
    unusable = [r["run_id"] for r, b in zip(records, best, strict=True) if r["status"] != "finished" or b is None]
    if unusable:
        raise ValueError(f"runs without a finished best checkpoint cannot join an ensemble: {', '.join(unusable)}")
    seeds = seeds if seeds is not None else [r["seed"] for r in records]
    members = [{"run_id": r["run_id"], "seed": s, "metrics": r["metrics"]}
               for r, s in zip(records, seeds, strict=True)]
    spread = metric_spread([r["metrics"] for r in records])
    run_id = store.create_run(first["kind"], dataset=first["dataset"], fingerprint=first["fingerprint"],
                              config={**first["config"], "ensemble": member_ids, "seeds": members,
                                      "spread": spread},
                              seed=first["seed"], device=first["device"], parent_run=first["parent_run"])
    template = load_checkpoint(best[0]["path"])
    path = store.runs_dir / run_id / "best.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    refs = [{"run_id": r, "checkpoint": b["path"], "sha256": b["sha256"]}
            for r, b in zip(member_ids, best, strict=True)]
    sha = save_checkpoint(path, model_state={}, configs=template["configs"],
                          extra={**template["extra"], "ensemble": refs})
    store.add_checkpoint(run_id, path, sha, step=0, is_best=True)
    metrics = {"members": len(member_ids)}
    store.finish_run(run_id, "finished", metrics=metrics, step=0)
    return Finished(run_id=run_id, status="finished", metrics=metrics, best_checkpoint=str(path))


__all__ = ["SeedsResult", "metric_spread", "record_ensemble", "train_seeds"]
