"""A job the engine refuses (bad data, dates, checkpoints) ends with the engine's reason, not a traceback."""

from __future__ import annotations

from workstation.jobs import JobRunner


def _refusing_job(token):
    yield from ()
    raise ValueError("GOOG daily: no days to evaluate in the model's test period from 2020-04-22")


def test_a_refused_job_finishes_failed_with_the_reason_only(qtbot):
    runner = JobRunner()
    with qtbot.waitSignal(runner.finished, timeout=10_000) as blocker:
        runner.start(_refusing_job, "evaluate")
    final = blocker.args[0]
    assert final.status == "failed"
    assert final.error.startswith("GOOG daily: no days to evaluate")
    assert "Traceback" not in final.error
