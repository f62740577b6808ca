"""The History tree shows a rolling retrain's lineage: source -> rolling run -> each retrain (whose own
strategy retrain nests under it by parent_run), by each retrain's parent_run or, in histories recorded before
retrains kept one, from the blocks the rolling run records."""

from __future__ import annotations

from PySide6.QtCore import Qt

from engine.store import RunStore
from workstation import theme
from workstation.panels.history_panel import KEY_ROLE, HistoryPanel


def _run(store: RunStore, kind: str, parent: str | None = None) -> str:
    return store.create_run(kind, dataset="spx", fingerprint="", config={}, seed=0, device="cpu",
                            parent_run=parent, status="finished")


def test_retrains_sit_under_their_rolling_run(qtbot, settings, tmp_path):
    store = RunStore(tmp_path / "runs.db")
    source = _run(store, "price")
    rolling = _run(store, "rolling", parent=source)
    first = _run(store, "price", parent=rolling)  # a retrain as rolling_job records it
    second = _run(store, "price")  # one recorded before retrains kept a parent: placed by the block listing
    strategy = _run(store, "strategy", parent=second)
    unrelated = _run(store, "price")
    store.finish_run(rolling, "finished", metrics={"blocks": [
        {"train_end": "2018-05-31", "start": "2018-06-01", "end": "2018-06-15", "runs": [first]},
        {"train_end": "2018-06-15", "start": "2018-06-18", "end": "2018-06-29", "runs": [second, strategy]}]})
    panel = HistoryPanel(store, theme.palette())
    qtbot.addWidget(panel)

    def children(run_id: str) -> list[str]:
        index = next(i for i in panel._indexes() if i.data(KEY_ROLE) == ("run", run_id))
        return sorted(panel.proxy.index(r, 0, index).data(KEY_ROLE)[1] for r in range(panel.proxy.rowCount(index)))

    roots = {panel.proxy.index(r, 0).data(KEY_ROLE)[1] for r in range(panel.proxy.rowCount())}
    assert roots == {source, unrelated}
    assert children(source) == [rolling]
    assert children(rolling) == sorted([first, second])
    assert children(second) == [strategy]  # its own parent_run wins over the block listing
    assert panel.proxy.index(0, 0).data(Qt.ItemDataRole.DisplayRole) in roots
