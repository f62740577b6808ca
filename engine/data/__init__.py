"""Floor 1 data layer: users' files in (io), bundled samples, causal features, leak-free windows, calendar splits."""

from engine.data.features import daily_features, feature_mask
from engine.data.io import BarTable, DataImportError, ImportIssue, load_bars
from engine.data.samples import Sample, get_sample, list_samples, sample_path
from engine.data.splits import (
    CutDates,
    calendar_cut_dates,
    calendar_split,
    days_after,
    pooled_calendar,
    pooled_calendar_split,
    recorded_cut_dates,
    split_json,
    split_spans,
    strategy_cut_dates,
    strategy_split,
)
from engine.data.windows import (
    PooledWindows,
    Split,
    WindowSet,
    build_windows,
    chronological_split,
    sequence_starts,
    targets_to_prices,
    walk_forward_folds,
)

__all__ = [
    "BarTable",
    "CutDates",
    "DataImportError",
    "ImportIssue",
    "PooledWindows",
    "Sample",
    "Split",
    "WindowSet",
    "build_windows",
    "calendar_cut_dates",
    "calendar_split",
    "chronological_split",
    "daily_features",
    "days_after",
    "feature_mask",
    "get_sample",
    "list_samples",
    "load_bars",
    "pooled_calendar",
    "pooled_calendar_split",
    "recorded_cut_dates",
    "sample_path",
    "sequence_starts",
    "split_json",
    "split_spans",
    "strategy_cut_dates",
    "strategy_split",
    "targets_to_prices",
    "walk_forward_folds",
]
