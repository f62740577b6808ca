"""What a cross-sectional forecast has to beat: simple price factors and a gradient-boosted ranker.

Every figure here is computed per day across the instruments of a panel on one calendar (closes [D, N],
NaN where an instrument has no bar), reading only days <= d: 5-day reversal, 12-1 momentum and 60-day
low volatility (higher score = expected to do better), and the field's standard baseline, LightGBM on
hand-made price/volume factors, trained on the run's training days, early-stopped on its validation
days and scored on the evaluation days: the model to beat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

FACTORS = ("reversal_5d", "momentum_12_1", "low_vol_60d")  # the simple factors each evaluation reports
LGBM_FEATURES = ("ret_1d", "ret_5d", "ret_20d", "ret_60d", "vol_20d", "vol_60d", "momentum_12_1",
                 "from_52w_high", "volume_ratio")
LGBM_PARAMS = {"objective": "regression", "learning_rate": 0.03, "num_leaves": 15, "min_data_in_leaf": 50,
               "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
               "verbose": -1, "num_threads": 2, "seed": 0}
LGBM_ROUNDS, LGBM_PATIENCE = 1000, 50


@dataclass(eq=False)  # holds arrays
class Panel:
    """Instruments on one calendar: close and volume [D, N] (NaN where there is no bar)."""

    dates: pd.DatetimeIndex  # [D]
    names: list[str]  # [N]
    close: np.ndarray  # [D, N]
    volume: np.ndarray  # [D, N]

    @classmethod
    def from_series(cls, names: list[str], dates: list[pd.DatetimeIndex], close: list[np.ndarray],
                    volume: list[np.ndarray | None]) -> Panel:
        calendar = pd.DatetimeIndex(sorted(set().union(*dates)))
        c, v = np.full((len(calendar), len(names)), np.nan), np.full((len(calendar), len(names)), np.nan)
        for k, (d, x, vol) in enumerate(zip(dates, close, volume)):  # one scatter per instrument
            rows = calendar.get_indexer(d)
            c[rows, k] = x
            if vol is not None:
                v[rows, k] = vol
        return cls(calendar, list(names), c, v)

    def log_close(self) -> np.ndarray:
        """[D, N] log close carried forward over an instrument's gaps (causal), NaN before its first bar."""
        return pd.DataFrame(np.log(self.close)).ffill().to_numpy()

    def forward_returns(self, horizon: int) -> np.ndarray:
        """[D, N, H] log(close_{d+h} / close_d) on each instrument's own next bars; NaN past its data
        or on days it has no bar."""
        out = np.full((*self.close.shape, horizon), np.nan)
        log_close = np.log(self.close)
        for k in range(self.close.shape[1]):  # per instrument: its own bars, vectorised over days
            rows = np.flatnonzero(np.isfinite(log_close[:, k]))
            x = log_close[rows, k]
            for h in range(1, horizon + 1):  # a handful of horizons
                out[rows[:-h], k, h - 1] = x[h:] - x[:-h]
        return out


def _lag(x: np.ndarray, days: int) -> np.ndarray:
    return np.r_[np.full((days, x.shape[1]), np.nan), x[:-days]]


def _rolling_std(r: np.ndarray, days: int) -> np.ndarray:
    return pd.DataFrame(r).rolling(days, min_periods=days // 2).std().to_numpy()


def factor_scores(panel: Panel) -> dict[str, np.ndarray]:
    """{name: [D, N]} the simple factors, higher = expected to do better; NaN where no bar that day."""
    lc = panel.log_close()
    r = lc - _lag(lc, 1)
    here = np.isfinite(panel.close)
    scores = {"reversal_5d": -(lc - _lag(lc, 5)), "momentum_12_1": _lag(lc, 21) - _lag(lc, 252),
              "low_vol_60d": -_rolling_std(r, 60)}
    return {name: np.where(here, s, np.nan) for name, s in scores.items()}


def lgbm_features(panel: Panel) -> np.ndarray:
    """[D, N, F] LGBM_FEATURES per day (causal); NaN where undefined (LightGBM treats NaN as missing)."""
    lc = panel.log_close()
    r = lc - _lag(lc, 1)
    high = pd.DataFrame(lc).rolling(252, min_periods=20).max().to_numpy()
    volume = pd.DataFrame(panel.volume)
    ratio = np.log(volume / volume.rolling(20, min_periods=5).mean()).to_numpy()
    columns = [lc - _lag(lc, 1), lc - _lag(lc, 5), lc - _lag(lc, 20), lc - _lag(lc, 60), _rolling_std(r, 20),
               _rolling_std(r, 60), _lag(lc, 21) - _lag(lc, 252), lc - high, ratio]
    x = np.stack(columns, axis=-1)
    x[~np.isfinite(panel.close)] = np.nan
    return np.where(np.isfinite(x), x, np.nan)


def excess(y: np.ndarray) -> np.ndarray:
    """[D, N] minus the mean over the instruments with a value that day."""
    n = np.isfinite(y).sum(1, keepdims=True)
    mean = np.divide(np.nansum(y, 1, keepdims=True), n, out=np.full((len(y), 1), np.nan), where=n > 0)
    return y - mean


def lgbm_scores(panel: Panel, horizon: int, train: np.ndarray, val: np.ndarray, score: np.ndarray
                ) -> tuple[np.ndarray, dict[str, int]]:
    """([D, N, H] LightGBM's predicted h-day excess return on the `score` days (NaN elsewhere), the
    boosting rounds early stopping kept per horizon). train, val, score: [D] boolean day masks; a
    train or val day's target must be realised inside its part (the caller cuts at the run's dates)."""
    import lightgbm as lgb  # the baseline's only user

    x = lgbm_features(panel)
    y = panel.forward_returns(horizon)
    out = np.full((*panel.close.shape, horizon), np.nan)
    rounds: dict[str, int] = {}
    for h in range(horizon):  # one booster per horizon
        target = excess(y[..., h])
        flat_x, flat_y = x.reshape(-1, x.shape[-1]), target.reshape(-1)
        tr, va = ((np.isfinite(target) & days[:, None]).reshape(-1) for days in (train, val))
        if tr.sum() < 100 or va.sum() < 20:
            continue
        booster = lgb.train(LGBM_PARAMS, lgb.Dataset(flat_x[tr], flat_y[tr]), LGBM_ROUNDS,
                            valid_sets=[lgb.Dataset(flat_x[va], flat_y[va])],
                            callbacks=[lgb.early_stopping(LGBM_PATIENCE, verbose=False)])
        rounds[str(h + 1)] = int(booster.best_iteration)
        keep = (np.isfinite(panel.close) & score[:, None]).reshape(-1)
        pred = np.full(len(flat_y), np.nan)
        pred[keep] = booster.predict(flat_x[keep], num_iteration=booster.best_iteration)
        out[..., h] = pred.reshape(panel.close.shape)
    return out, rounds


__all__ = ["FACTORS", "LGBM_FEATURES", "Panel", "excess", "factor_scores", "lgbm_features", "lgbm_scores"]
