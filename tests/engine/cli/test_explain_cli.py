"""`explain`: one day of a tiny trained price run explained through the CLI, with CLI.md's exact keys, the
attention rows summing to 1, attributions that add up to output minus baseline output, and exit 2 for a
day without history or a horizon the network does not forecast."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest

from engine import cli
from engine.explain import COMPLETENESS

TINY = ["--set", "d_model=32", "--set", "n_layers=2", "--set", "n_heads=2", "--set", "kv_lora_rank=16",
        "--set", "qk_nope_head_dim=8", "--set", "qk_rope_head_dim=8", "--set", "v_head_dim=8",
        "--set", "ffn_hidden=64"]


def call(db, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(["--db", str(db), *argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    db = tmp_path_factory.mktemp("explain") / "runs.db"
    code, out, err = call(db, "--json", "train-price", "--data", "spx", "--start", "2011-01-01", "--preset", "tiny",
                          *TINY, "--max-steps", "8", "--batch-size", "16", "--seed", "5")
    assert code == 0, err
    return db, json.loads(out)["run_id"]


def test_json_has_the_contract_keys_and_adds_up(run):
    db, run_id = run
    code, out, err = call(db, "--json", "explain", "--run", run_id, "--data", "spx", "--date", "2016-05-07",
                          "--horizon", "5")
    assert code == 0, err
    doc = json.loads(out)
    assert {"asof", "attention", "attribution", "output", "baseline_output", "regime", "top"} <= set(doc)
    assert doc["asof"] == "2016-05-06"  # a Saturday falls back to Friday
    attention = np.array(doc["attention"])
    assert attention.shape == (2, 180)
    np.testing.assert_allclose(attention.sum(axis=1), 1.0, rtol=1e-6)
    values = np.array(doc["attribution"]["values"])
    assert values.shape == (180, len(doc["attribution"]["features"]))
    change = doc["output"] - doc["baseline_output"]
    assert abs(values.sum() - change) <= COMPLETENESS * abs(change)
    assert doc["dates"][-1] == "2016-05-06" and doc["regime"]["label"] in ("bear", "sideways", "bull")
    assert all("the 5-day median" in text for text in doc["top"])


def test_text_names_the_day_the_regime_and_the_baseline(run):
    db, run_id = run
    code, out, _ = call(db, "explain", "--run", run_id, "--data", "spx", "--date", "2017-03-01")
    assert code == 0
    assert "2017-03-01" in out and "regime:" in out and "baseline" in out


@pytest.mark.parametrize("argv, words", [(["--date", "1999-02-01"], "enough history"),
                                         (["--horizon", "9"], "horizon 9")])
def test_bad_day_or_horizon_exits_2(run, argv, words):
    db, run_id = run
    code, out, err = call(db, "--json", "explain", "--run", run_id, "--data", "spx", *argv)
    assert code == 2 and out == "" and words in err and "Traceback" not in err
