"""Floor 1 data layer: users' files in (io), bundled samples, causal features, leak-free windows."""

from engine.data.features import daily_features, feature_mask
from engine.data.io import BarTable, DataImportError, ImportIssue, load_bars
from engine.data.samples import Sample, get_sample, list_samples, sample_path
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
    "DataImportError",
    "ImportIssue",
    "PooledWindows",
    "Sample",
    "Split",
    "WindowSet",
    "build_windows",
    "chronological_split",
    "daily_features",
    "feature_mask",
    "get_sample",
    "list_samples",
    "load_bars",
    "sample_path",
    "sequence_starts",
    "targets_to_prices",
    "walk_forward_folds",
]
