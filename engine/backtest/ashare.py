"""A-share daily price limits as the exchanges set them, and the trades they block.

The limit price is the previous close times (1 +- limit), rounded half up to the 0.01 tick, on
raw (unadjusted) prices: a stock sits at its limit when it trades at exactly that price. The
rounding matters: 14.83 * 1.1 = 16.313 gives a limit-up of 16.31, a move of +9.98 %, which a
"change >= 10 %" test misses. A price beyond the limit cannot trade, so such a bar is an
ex-rights day (the exchange's reference price was the adjusted close) and is not a limit day.

Limits by board, from the 6-digit code in the instrument's name: 60xxxx / 00xxxx main board
10 % (ST names 5 %), 688xxx / 689xxx STAR 20 %, 300xxx / 301xxx ChiNext 20 % (10 % before
2020-08-24), Beijing 8xxxxx / 4xxxxx / 920xxx 30 %; no limits before 1996-12-16. ST status is
read from today's name (a file does not say when a name was ST).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

TICK = 0.01
LIMITS_SINCE = pd.Timestamp("1996-12-16")
CHINEXT_20_SINCE = pd.Timestamp("2020-08-24")
MAIN, ST, WIDE, BEIJING = 0.10, 0.05, 0.20, 0.30

_CODE = re.compile(r"(?<!\d)(\d{6})(?!\d)")
_ST = re.compile(r"(?<![A-Za-z])\*?ST(?![A-Za-z])")


def instrument_code(instrument: str) -> str | None:
    """The 6-digit exchange code in a name such as "SPDB 浦发银行 600000" or "sh600000"."""
    match = _CODE.search(instrument)
    return match.group(1) if match else None


def board_limit(instrument: str) -> float:
    """Today's daily limit of the instrument's board (10 % when the code is unknown)."""
    code = instrument_code(instrument) or ""
    if code.startswith(("688", "689", "300", "301")):
        return WIDE
    if code.startswith(("8", "4", "920")):
        return BEIJING
    return ST if _ST.search(instrument) else MAIN


def daily_limits(instrument: str, dates: pd.DatetimeIndex, limit_pct: float | None = None) -> np.ndarray:
    """Limit fraction per day (NaN where none applied); limit_pct overrides the board's on every day."""
    if limit_pct is not None:
        return np.full(len(dates), float(limit_pct))
    limits = np.full(len(dates), board_limit(instrument))
    if (instrument_code(instrument) or "").startswith(("300", "301")):
        limits[dates < CHINEXT_20_SINCE] = MAIN
    limits[dates < LIMITS_SINCE] = np.nan
    return limits


def limit_prices(reference: np.ndarray, limits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Limit-up and limit-down prices: reference * (1 +- limit) rounded half up to the tick."""
    def to_tick(x: np.ndarray) -> np.ndarray:
        return np.floor(x / TICK + 0.5 + 1e-9) * TICK  # the 1e-9 keeps 16.305 from rounding down

    return to_tick(reference * (1.0 + limits)), to_tick(reference * (1.0 - limits))


def limit_days(reference: np.ndarray, price: np.ndarray, limits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks: `price` at limit-up / limit-down against the previous close `reference`."""
    up, down = limit_prices(reference, limits)
    with np.errstate(invalid="ignore"):
        return np.abs(price - up) < TICK / 2, np.abs(price - down) < TICK / 2


def apply_limits(positions: np.ndarray, up: np.ndarray, down: np.ndarray) -> np.ndarray:
    """Positions after blocking rises on limit-up fills and falls on limit-down fills.

    Only limit days are visited (a few per cent of days), in date order, so each sees its
    predecessor's final position.
    """
    out = positions.copy()
    for t in np.flatnonzero(up | down):
        before = out[t - 1] if t > 0 else 0
        out[t] = min(out[t], before) if up[t] else max(out[t], before)
    return out


__all__ = ["apply_limits", "board_limit", "daily_limits", "instrument_code", "limit_days", "limit_prices"]
