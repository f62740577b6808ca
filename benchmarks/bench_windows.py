"""How long building every training window of the SSE Composite takes (issue 2: under 1 s; issue 7:
at least 100x a row-by-row pandas build).

The vectorised path (the classic feature set, which the reference recomputes; the default
vol_scaled set takes about 1.2-1.4x as long): features once per day, then every [180, 11] window, its 7 targets, the
chronological split and the strategy sequences (index arrays into per-day arrays, no copies).
The reference builds a subset of windows one at a time with pandas, as the first implementation
did, checks it agrees, and is scaled up to all windows.

Run: python benchmarks/bench_windows.py
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from engine.config import HORIZON, SEQ_LEN, WINDOW
from engine.data import build_windows, chronological_split, load_bars, sequence_starts
from engine.data.features import LEVEL_WINDOW

REFERENCE_WINDOWS = 100  # windows the slow path builds; its time is scaled to all of them
BUILDS = 3  # vectorised builds timed; their median counts


def build_all(bars) -> dict:
    """Everything training needs from one series; returns the arrays so they are really built."""
    ws = build_windows(bars, feature_set="classic")  # the set the row-by-row reference recomputes
    inputs, targets = ws.inputs(ws.ends), ws.targets(ws.ends)
    split = chronological_split(ws, 0.15, 0.15, embargo=HORIZON)
    days = {part: sequence_starts(getattr(split, part), SEQ_LEN)[:, None] + np.arange(SEQ_LEN)
            for part in ("train", "val", "test")}  # [n, 20] day indices: no window is copied
    returns = {part: ws.next_returns(d) for part, d in days.items()}
    return {"ws": ws, "inputs": inputs, "targets": targets, "days": days, "returns": returns}


def reference_window(frame: pd.DataFrame, end: int) -> tuple[np.ndarray, np.ndarray]:
    """One window and its targets the slow way: pandas on a slice, per window."""
    part = frame.iloc[max(end - WINDOW - LEVEL_WINDOW + 1, 0):end + 1]
    prev = part["close"].shift(1)
    last = part["close"].iloc[-1]
    out = pd.DataFrame({k: np.log(part[k] / last) for k in ("open", "high", "low", "close")})
    out["change"] = part["close"] / prev - 1
    out["amplitude"] = (part["high"] - part["low"]) / prev
    for k in ("volume", "amount", "turnover", "trades"):
        median = part[k].rolling(LEVEL_WINDOW, min_periods=1).median()
        out[k] = np.log1p(part[k] * (100 if k == "turnover" else 1)) - np.log1p(
            median * (100 if k == "turnover" else 1))
    out["time"] = np.sin(2 * np.pi * part.index.day_of_year / 365.25)
    x = out.iloc[-WINDOW:].fillna(0.0).to_numpy(np.float32)
    later = frame["close"].iloc[end + 1:end + 1 + HORIZON]
    return x, np.log(later.to_numpy() / frame["close"].iloc[end])


def main(sample: str = "sse") -> dict:
    started = time.perf_counter()
    bars = load_bars(sample)
    load_s = time.perf_counter() - started

    seconds = []
    for _ in range(BUILDS):  # the first build also pays first-call costs; the median is the steady figure
        started = time.perf_counter()
        built = build_all(bars)
        seconds.append(time.perf_counter() - started)
    build_s = float(np.median(seconds))
    ws = built["ws"]

    # early windows start at the series' first day, where the slice-based median would differ
    ends = np.linspace(WINDOW + LEVEL_WINDOW, len(ws) - HORIZON - 1, REFERENCE_WINDOWS).astype(int)
    started = time.perf_counter()
    reference = [reference_window(bars.frame, int(e)) for e in ends]
    reference_s = (time.perf_counter() - started) * len(ws.ends) / len(ends)
    error = max(float(np.abs(ws.inputs(ends) - np.stack([x for x, _ in reference])).max()),
                float(np.abs(ws.targets(ends) - np.stack([y for _, y in reference])).max()))

    result = {
        "sample": sample, "bars": len(ws), "windows": len(ws.ends),
        "inputs_shape": list(built["inputs"].shape), "inputs_mb": built["inputs"].nbytes / 2**20,
        "sequences": {part: len(d) for part, d in built["days"].items()},
        "load_s": load_s, "build_s": build_s, "reference_s_scaled": reference_s,
        "speedup": reference_s / build_s, "max_abs_difference": error, "under_1s": build_s < 1.0,
    }
    print(f"{sample}: {result['bars']} bars -> {result['windows']} windows {result['inputs_shape']} "
          f"({result['inputs_mb']:.0f} MB float32), sequences {result['sequences']}")
    print(f"import {load_s:.3f} s; all windows + targets + split + sequences {build_s:.3f} s "
          f"({'under' if build_s < 1 else 'OVER'} 1 s)")
    print(f"row-by-row pandas, {len(ends)} windows scaled to all: {reference_s:.1f} s; "
          f"speed-up {result['speedup']:.0f}x; max |difference| {error:.2e}")
    return result


if __name__ == "__main__":
    main()
