"""What the History panel says about a record: names a person reads (instrument, kind, short id,
file names rather than paths), a formatted details view of a run's recipe, split and metrics or a
backtest's costs and results, and side-by-side metric rows for several selected records."""

from __future__ import annotations

import html
from pathlib import Path

from workstation.panels.backtest_panels import METRIC_ROWS, format_metric

COMPACT = {"information_ratio": "Info ratio vs buy & hold"}  # row names of the narrow comparison table
RUN_FIELDS = (("run_id", "Run"), ("kind", "Kind"), ("status", "Status"), ("dataset", "Datasets"),
              ("parent_run", "Parent run"), ("seed", "Seed"), ("device", "Device"), ("started", "Started"),
              ("ended", "Ended"), ("error", "Error"))
RECIPE_SECTIONS = (("model", "Model"), ("data", "Data"), ("train", "Training"), ("loss", "Strategy loss"))
BACKTEST_CONFIG = (("instrument", "Instrument"), ("kind", "Traded"), ("start", "From"), ("end", "To"),
                   ("fill", "Fill"), ("cost_bps", "Cost (bps)"), ("slippage_bps", "Slippage (bps)"),
                   ("stamp_duty_bps", "Stamp duty (bps)"), ("ashare_rules", "A-share rules"),
                   ("limit_pct", "Price limit"), ("risk_free", "Risk-free rate (annual)"),
                   ("in_sample", "Reaches into training days"), ("source", "Model"))


def dataset_name(dataset: str | None) -> str:
    """Sample names as they are, files by their name (a pooled run lists several)."""
    parts = [p.strip() for p in (dataset or "").split(",") if p.strip()]
    return ", ".join(Path(p).name if ("/" in p or "\\" in p) else p for p in parts)


def short_id(record_id: str) -> str:
    """The random tail of a run or backtest id (kind-date-time-hex): enough to tell two apart."""
    return "#" + record_id.rsplit("-", 1)[-1]


def run_label(record: dict) -> str:
    return f"{dataset_name(record['dataset'])} {record['kind']} {short_id(record['run_id'])}"


def backtest_label(backtest: dict) -> str:
    config = backtest["config"]
    name = (config.get("instrument") or dataset_name(backtest["dataset"])).split(" (")[0]  # no code suffix
    kind = "walk-forward" if config.get("walk_forward") else config.get("kind", "")
    return f"{name} {kind} {short_id(backtest['backtest_id'])}".replace("  ", " ")


def value_text(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return " → ".join(value_text(v) for v in value) if len(value) == 2 else ", ".join(map(value_text, value))
    return str(value)


def _section(title: str, rows: list[tuple[str, str]]) -> str:
    if not rows:
        return ""
    cells = "".join(f"<tr><td style='padding-right:14px'><b>{html.escape(k)}</b></td>"
                    f"<td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<h4 style='margin:8px 0 2px 0'>{html.escape(title)}</h4><table cellspacing=1>{cells}</table>"


def run_details(record: dict, checkpoints: list[dict]) -> str:
    config = record["config"]
    run = [(label, dataset_name(record[k]) if k == "dataset" else value_text(record.get(k)))
           for k, label in RUN_FIELDS if record.get(k) not in (None, "")]
    parts = [_section("Run", run)]
    split = config.get("split") or {}
    parts.append(_section("Split (first → last window end)",
                          [(part, value_text(split[part])) for part in ("train", "val", "test") if part in split]))
    parts.append(_section("Stage 2 features (days encoded ← price network trained to)",
                          [(" → ".join(b["encoded"]), b["price_train_end"])
                           for b in config.get("features_from") or []]))
    parts.append(_section("Seed ensemble of", [(short_id(m["run_id"]), f"seed {m['seed']}")
                                               for m in config.get("seeds") or [] if "ensemble" in config]))
    metrics = record.get("metrics") or {}
    parts.append(_section("Metrics", [(k, value_text(v)) for k, v in sorted(metrics.items())
                                      if not isinstance(v, (dict, list))]))
    for key, title in RECIPE_SECTIONS:
        if isinstance(config.get(key), dict):
            parts.append(_section(title, [(k, value_text(v)) for k, v in config[key].items()]))
    parts.append(_section("Checkpoints", [(f"step {c['step']}" + (" (best)" if c["is_best"] else ""),
                                           Path(c["path"]).name) for c in checkpoints]))
    return "".join(parts)


def backtest_details(backtest: dict) -> str:
    config, metrics = backtest["config"], backtest["metrics"]
    head = [("Backtest", backtest["backtest_id"]), ("Run", value_text(backtest.get("run_id"))),
            ("Dataset", dataset_name(backtest["dataset"])), ("Recorded", backtest["created"].replace("T", " ")[:19])]
    shown = [(label, f"{config[k]:.2%}" if k == "risk_free" and config[k] is not None else value_text(config[k]))
             for k, label in BACKTEST_CONFIG if k in config]
    folds = config.get("walk_forward") or []
    parts = [_section("Backtest", head), _section("Setup", shown)]
    if folds:
        parts.append(_section(f"Walk-forward ({len(folds)} folds)",
                              [(f"fold {i + 1}", f"{f['start']} → {f['end']}") for i, f in enumerate(folds)]))
    parts.append(_section("Metrics", [(label, format_metric(k, metrics.get(k))) for k, label in METRIC_ROWS]))
    return "".join(parts)


def compare_backtests(backtests: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Column labels and rows (metric, one value per backtest) for a side-by-side table."""
    rows = [["Period"] + [f"{b['config'].get('start')} → {b['config'].get('end')}" for b in backtests]]
    rows += [[COMPACT.get(k, label)] + [format_metric(k, b["metrics"].get(k)) for b in backtests]
             for k, label in METRIC_ROWS]
    return [backtest_label(b) for b in backtests], rows


def compare_runs(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    keys = sorted({k for r in records for k, v in (r["metrics"] or {}).items() if isinstance(v, (int, float))})
    rows = [["Status"] + [r["status"] for r in records]]
    rows += [[k] + [value_text((r["metrics"] or {}).get(k)) for r in records] for k in keys]
    return [run_label(r) for r in records], rows
