"""The real datasets bundled in assets/data, by name, so the app and tests open them without paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[2] / "assets" / "data"


@dataclass(frozen=True)
class Sample:
    name: str
    instrument: str
    market: str
    path: Path
    rows: int  # bars in the file (assets/data/README.md): dates, for a universe
    first: str
    last: str
    instruments: int = 1  # a universe's members (engine.data.universe reads them)


_SAMPLES = (
    Sample("sse", "SSE Composite (上证指数 000001)", "cn", DATA_DIR / "sh000001_sse_composite.csv",
           8455, "1990-12-19", "2025-08-05"),
    Sample("spdb", "SPDB 浦发银行 600000 (unadjusted)", "cn", DATA_DIR / "sh600000_spdb_unadjusted.csv",
           6119, "1999-11-10", "2025-08-05"),
    Sample("spx", "S&P 500 index", "us", DATA_DIR / "spx_sp500_index.csv", 5031, "1999-01-04", "2018-12-31"),
    Sample("aapl", "Apple (AAPL)", "us", DATA_DIR / "aapl.csv", 3270, "2000-03-01", "2013-03-01"),
    Sample("goog", "Google (GOOG)", "us", DATA_DIR / "goog.csv", 2148, "2004-08-19", "2013-03-01"),
)


# Universes: many instruments in one file; `--data us12` means all of them, `us12:AAPL` one.
_UNIVERSES = (
    Sample("us12", "12 US large caps (adjusted closes only)", "us",
           DATA_DIR / "universe" / "us_large_caps_12_close.csv", 8313, "1990-01-02", "2022-12-28", 12),
)


def list_samples() -> list[Sample]:
    """The single-instrument samples."""
    return list(_SAMPLES)


def list_universes() -> list[Sample]:
    return list(_UNIVERSES)


def get_sample(name: str) -> Sample:
    """The sample called `name`; KeyError listing the known names otherwise."""
    for sample in _SAMPLES + _UNIVERSES:
        if sample.name == name:
            return sample
    raise KeyError(f"no bundled sample {name!r}; known: {', '.join(s.name for s in _SAMPLES + _UNIVERSES)}")


def sample_path(name: str) -> Path:
    return get_sample(name).path
