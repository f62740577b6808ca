"""The README's Universe panel screenshot from a real universe evaluation, without re-running it.

    python -m engine evaluate --run RUN --data us12 --db runs.db --json > us12_eval.json
    QT_QPA_PLATFORM=offscreen python scripts/universe_panel_screenshot.py us12_eval.json --db runs.db

Evaluating a universe takes minutes on a CPU; the panel only draws the report, so this feeds the saved
`evaluate --json` report to the real panel (workstation.panels.universe_panel) and saves its grab. The GUI
test draws the same panel from a synthetic 7-name universe in seconds, but that is no picture of real data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PySide6.QtWidgets import QApplication

from engine.jobs.evaluate import EvaluationReport
from engine.store import RunStore
from workstation import theme
from workstation.panels.universe_panel import UniversePanel

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshots" / "universe_panel.png"


def report_from_json(path: Path) -> EvaluationReport:
    """The report `evaluate --json` printed (EvaluationReport.to_json's keys)."""
    data = json.loads(path.read_text())
    return EvaluationReport("finished", data["run_id"], data["checkpoint_sha256"], data["datasets"],
                            data["instruments"], data["pooled"], data["cross_section"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="the JSON `python -m engine evaluate ... --json` printed")
    parser.add_argument("--db", required=True, help="the run history the evaluated run is in")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--size", type=int, nargs=2, default=(1400, 860), metavar=("W", "H"))
    args = parser.parse_args()
    app = QApplication.instance() or QApplication([])
    panel = UniversePanel(RunStore(args.db), theme.apply(app))
    panel.resize(*args.size)
    panel.show()
    panel.show_report(report_from_json(args.report))
    app.processEvents()  # lay the tables and plots out before the grab
    if not panel.grab().save(str(args.out)):
        raise SystemExit(f"could not write {args.out}")
    print(args.out)


if __name__ == "__main__":
    main()
