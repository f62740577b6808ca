"""`--seeds N` options refused before anything is trained or recorded: N below 1, or with --resume."""

from __future__ import annotations

import pytest

from engine import cli
from engine.store import RunStore


@pytest.mark.parametrize("argv", [
    ["train-price", "--data", "spx", "--seeds", "0"],
    ["train-price", "--data", "spx", "--seeds", "2", "--resume", "price-1"],
    ["train-strategy", "--price-run", "price-1", "--seeds", "-1"],
])
def test_bad_seeds_exit_2_and_record_nothing(tmp_path, capsys, argv):
    db = tmp_path / "runs.db"
    assert cli.main(["--json", "--db", str(db), *argv]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert RunStore(db).list_runs() == []
