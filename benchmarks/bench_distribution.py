"""Distribution forecasts against the volatility baselines on held-out US series (issue 13's reference table).

Run: .venv/bin/python benchmarks/bench_distribution.py [--start 2009-01-01] [--run RUN | --steps N] [--db FILE]
                                                          [--strategy-seeds 2] [--strategy-epochs 10]
Per bundled US series, forecast days from --start (the calendar test split): pinball skill (10/50/90 %
quantiles) against climatology and 80 % band coverage at h = 1 and 7 of EWMA, GARCH(1,1)-t and, with a
model, the price network on the same days; then 10 bps backtests from --start: the 10 % volatility target
and buy and hold, and with a model its follow-the-forecast strategy and the analytic mean-variance policy
on its 1-day median and band sigma. The model is --run RUN (a quantile price run), or with --steps N a
tiny quantile network trained here for N steps on the three series, validated on the two years before
--start (recorded in --db, so a later call can pass --run).

With a model, stage 2 (the strategy network, default utility loss at 10 bps) is trained on it with and
without the one-hot causal regime among its inputs, --strategy-seeds seeds each, and each backtested
like the above; the last table is the regime input's effect (with minus without, per seed) beside the
spread over seeds, so the difference can be read against seed noise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.backtest import run_backtest
from engine.baselines import baseline_quantiles
from engine.config import (
    HORIZON,
    PRESETS,
    BacktestConfig,
    DataConfig,
    StrategyLossConfig,
    StrategyModelConfig,
    TrainConfig,
    n_features,
    override,
)
from engine.data import load_bars
from engine.evaluation import BAND_LEVELS, coverage, pinball, pinball_skill
from engine.events import run_to_end
from engine.forecast import LoadedPriceModel, forecast_quantiles, load_bars_as_trained, load_price_model, model_windows
from engine.jobs.backtest import backtest_job
from engine.store import RunStore
from engine.training.price import train_price
from engine.training.strategy import train_strategy

US = ("spx", "aapl", "goog")
REFERENCE = (0.1, 0.5, 0.9)  # the reference table's pinball levels
PICK = [BAND_LEVELS.index(q) for q in REFERENCE]


def distribution_rows(name: str, start: str, loaded: LoadedPriceModel | None) -> list[dict]:
    """EWMA, GARCH-t (and the model's) pinball skill vs climatology and 80 % coverage, on the days
    from `start` that every forecaster covers (the model's windows when there is one)."""
    if loaded is None:
        frame = load_bars(name).frame
        close, dates = frame["close"].to_numpy(), frame.index
        days = np.flatnonzero(dates >= pd.Timestamp(start))
        ws = None
    else:
        ws = model_windows(loaded, load_bars_as_trained(loaded, name))
        close, dates = ws.close, ws.dates
        days = ws.ends[ws.dates[ws.ends] >= pd.Timestamp(start)]
    realised = np.full((len(days), HORIZON), np.nan)
    for h in range(1, HORIZON + 1):  # seven horizons
        ok = days + h < len(close)
        realised[ok, h - 1] = np.log(close[days[ok] + h] / close[days[ok]])
    q = baseline_quantiles(close, dates, days, BAND_LEVELS)
    if ws is not None:
        q["model"] = forecast_quantiles(loaded, ws, days).quantile_returns
    finite = np.logical_and.reduce([np.isfinite(v).all(-1) for v in q.values()])
    both = np.where(finite, realised, np.nan)
    ref = pinball(q["climatology"][..., PICK], both, REFERENCE)
    rows = []
    for model in [m for m in ("model", "ewma", "garch") if m in q]:
        skill = pinball_skill(pinball(q[model][..., PICK], both, REFERENCE), ref)
        cover = coverage(q[model], both, BAND_LEVELS)["0.8"]
        rows.append({"series": name, "model": model, "skill_h1": skill[0], "skill_h7": skill[6],
                     "cov80_h1": cover[0], "cov80_h7": cover[6]})
    return rows


def vol_target_row(name: str, start: str) -> dict:
    frame = load_bars(name).frame
    close = frame["close"]
    days = close.index[close.index >= pd.Timestamp(start)]
    result = run_backtest(close, pd.Series(10, index=days), BacktestConfig(cost_bps=10), opens=frame["open"])
    held, target = result.baselines["buy_and_hold"], result.baselines["vol_target"]
    return {"series": name, "sharpe_vol_target": target["sharpe"], "sharpe_buy_and_hold": held["sharpe"],
            "sharpe_diff": target["sharpe"] - held["sharpe"],
            "max_dd_ratio": target["max_drawdown"] / held["max_drawdown"]}


def strategy_rows(name: str, start: str, run: str, store: RunStore, label: str,
                  baselines: tuple[str, ...] = (), **keys: object) -> list[dict]:
    """`run`'s backtest from `start` at 10 bps, next-open fills: its positions (follow the forecast for a
    price run, the network's for a strategy run) as `label` with `keys`, and the named baselines of the
    same backtest, each beside buy and hold."""
    record = run_to_end(backtest_job(run, name, cfg=BacktestConfig(cost_bps=10, start=start), store=store))
    result = record.result
    held = result.baselines["buy_and_hold"]
    paths = {label: result.metrics, **{k: result.baselines.get(k) for k in baselines}}
    return [{"series": name, "strategy": k, "sharpe": m["sharpe"], "sharpe_buy_and_hold": held["sharpe"],
             "max_dd": m["max_drawdown"], "max_dd_buy_and_hold": held["max_drawdown"],
             "max_dd_ratio": m["max_drawdown"] / held["max_drawdown"], **(keys if k == label else {})}
            for k, m in paths.items() if m is not None]


def train_strategies(price_run: str, seeds: int, epochs: int, store: RunStore) -> dict[tuple[bool, int], str]:
    """Stage 2 on `price_run` (its instruments and cut dates, the default utility loss at 10 bps), with and
    without the regime among its inputs, seeds 0..seeds-1 each: {(regime_input, seed): run id}."""
    runs = {}
    for regime, seed in [(r, s) for r in (True, False) for s in range(seeds)]:
        final = run_to_end(train_strategy(
            price_run, [], model_cfg=StrategyModelConfig(regime_input=regime),
            loss_cfg=StrategyLossConfig(cost_bps=10), data_cfg=DataConfig(), store=store,
            train_cfg=TrainConfig(epochs=epochs, seed=seed, lr=1e-3, device="cpu", precision="fp32")))
        if final.status != "finished":
            raise SystemExit(f"strategy training {final.status}: {final.error}")
        print(f"trained strategy {final.run_id}: regime input {regime}, seed {seed}, up to {epochs} epochs")
        runs[regime, seed] = final.run_id
    return runs


def regime_effect(rows: pd.DataFrame) -> pd.DataFrame:
    """Per series: the regime input's effect on Sharpe and max drawdown (with minus without, mean over
    seeds and per seed) beside the spread over seeds (max - min) of each variant."""
    nets = rows[rows["seed"].notna()]
    sharpe = nets.pivot_table(index=["series", "seed"], columns="regime_input", values="sharpe")
    max_dd = nets.pivot_table(index=["series", "seed"], columns="regime_input", values="max_dd")
    diff = pd.DataFrame({"sharpe_diff": sharpe[True] - sharpe[False], "max_dd_diff": max_dd[True] - max_dd[False]})
    by_series = diff.groupby(level="series")
    spread = sharpe.groupby(level="series").agg(lambda v: v.max() - v.min())
    return pd.DataFrame({
        "sharpe_diff_mean": by_series["sharpe_diff"].mean(),
        "sharpe_diff_per_seed": by_series["sharpe_diff"].agg(lambda v: " ".join(f"{x:+.3f}" for x in v)),
        "sharpe_seed_range_with": spread[True], "sharpe_seed_range_without": spread[False],
        "max_dd_diff_mean": by_series["max_dd_diff"].mean(),
    }).reset_index()


def train_model(steps: int, start: str, store: RunStore) -> str:
    """A tiny quantile network on the three series: validation the two years before `start`, training before."""
    val_end = f"{pd.Timestamp(start) - pd.offsets.BDay(1):%Y-%m-%d}"
    train_end = f"{pd.Timestamp(start) - pd.DateOffset(years=2) - pd.offsets.BDay(1):%Y-%m-%d}"
    data_cfg = DataConfig(train_end=train_end, val_end=val_end)
    model_cfg = override(PRESETS["tiny"], head="quantile", n_features=n_features(data_cfg))
    train_cfg = TrainConfig(epochs=1000, max_steps=steps, batch_size=16, eval_every=max(1, steps // 4),
                            device="cpu", precision="fp32", seed=0)
    final = run_to_end(train_price(list(US), model_cfg=model_cfg, data_cfg=data_cfg, train_cfg=train_cfg,
                                   store=store))
    if final.status != "finished":
        raise SystemExit(f"training {final.status}: {final.error}")
    print(f"trained {final.run_id}: {steps} steps, training to {train_end}, validation to {val_end} "
          f"(in {store.path})")
    return final.run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", default="2009-01-01")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--run", help="a quantile price run to score beside the baselines")
    source.add_argument("--steps", type=int, help="train a tiny quantile network for this many steps first")
    parser.add_argument("--db", help="the run history (default: the app's)")
    parser.add_argument("--strategy-seeds", type=int, default=2,
                        help="with a model: strategy networks per variant (regime input on / off); 0 for none")
    parser.add_argument("--strategy-epochs", type=int, default=10, help="stage 2's budget (early-stopped)")
    args = parser.parse_args()
    store = RunStore(args.db) if args.db else RunStore()
    run = train_model(args.steps, args.start, store) if args.steps else args.run
    loaded = load_price_model(run, store) if run else None
    pd.set_option("display.float_format", "{:.3f}".format)
    print(f"From {args.start}: pinball skill vs climatology (10/50/90 % quantiles), 80 % coverage"
          + (f"; model {run}" if run else ""))
    print(pd.DataFrame([r for name in US for r in distribution_rows(name, args.start, loaded)]).to_string(index=False))
    print("\nVolatility target 10 % (EWMA) vs buy and hold, 10 bps, next-open fill")
    print(pd.DataFrame([vol_target_row(name, args.start) for name in US]).to_string(index=False))
    if run:
        print_strategies(run, args, store)


def print_strategies(run: str, args: argparse.Namespace, store: RunStore) -> None:
    """The strategy table (the strategy networks with and without the regime input, or the price run's
    follow-the-forecast when none are trained; the baselines of the last backtest per series: follow the
    forecast, the analytic policy, the volatility target) and the regime input's effect."""
    nets = train_strategies(run, args.strategy_seeds, args.strategy_epochs, store) if args.strategy_seeds else {}
    entries = [(net, f"strategy net, regime {'in' if regime else 'out'}, seed {seed}",
                {"regime_input": regime, "seed": seed}) for (regime, seed), net in nets.items()]
    entries = entries or [(run, "follow_forecast", {})]
    baselines = ("follow_forecast", "analytic", "vol_target")[0 if nets else 1:]
    rows = pd.DataFrame([r for name in US for i, (model, label, keys) in enumerate(entries)
                         for r in strategy_rows(name, args.start, model, store, label,
                                                baselines if i == len(entries) - 1 else (), **keys)])
    print(f"\nModel {run} from {args.start}, 10 bps, next-open fill: the strategy network with and without the "
          "regime input, following the forecast, the analytic policy on the distribution, the volatility "
          "target; each beside buy and hold")
    print(rows.drop(columns=["regime_input", "seed"], errors="ignore").to_string(index=False))
    if nets:
        print("\nRegime input's effect on the strategy network (with minus without; seed range = max - min "
              "Sharpe over seeds; max drawdowns are negative, so a positive difference is a smaller drawdown)")
        print(regime_effect(rows).to_string(index=False))

if __name__ == "__main__":
    main()
