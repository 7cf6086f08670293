"""`make demo`'s script end to end: the pipelines through the real CLI, serving, then the
continuous-training story (its conditions are asserted in detail by test_ct_scenario.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# the whole demo takes 3-5 minutes: more than the suite's default per-test timeout
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DEMO = Path(__file__).parents[2] / "examples" / "demo" / "run_demo.py"


def test_demo_trains_caches_and_shows_lineage(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "CONVEYOR_HOME": str(home), "COLUMNS": "160"}
    done = subprocess.run(
        [sys.executable, str(DEMO)],
        env=env,
        cwd=tmp_path,
        text=True,
        capture_output=True,
        timeout=900,  # the pipelines, three serving checks, serving, the ct story (~5 min)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "run 1 succeeded" in out
    assert "run 2: ingest cached, split cached, train cached, evaluate cached" in out
    accuracy = float(out.split("accuracy")[1].split()[0])
    assert accuracy > 0.9
    assert "step train run 1" in out and "step ingest run 1" in out  # the model's lineage
    assert "span 1: blessed and promoted to production" in out  # no production yet
    assert "compared with baseline census:1" in out  # span 2 faces span 1's model
    assert "span 3: BLOCKED by step validate" in out
    assert "age: wasserstein" in out  # the shifted feature is named, with its score
    assert "nothing was trained; production is unchanged" in out
    assert "production -> " in out  # the registry table
    # each candidate was served by `conveyor serve` in a child process before registration
    assert out.count("serving check: 20 canary requests to `conveyor serve` answered") == 3
    # part 3: the production model served, called, given feedback, stopped gracefully
    assert "served 200 requests in" in out and "feedback stored: 200" in out
    assert "server stopped with SIGTERM: a graceful shutdown" in out
    assert "prediction log: 200 records for this demo's 200 requests" in out
    assert "feedback joined to predictions: 200 of 200" in out
    assert list((home / "artifacts" / "predictions").rglob("*.parquet"))
    assert list((home / "reports").glob("*-evaluation.html"))
    assert f"results are in {home}" in out
    assert (home / "metadata.db").is_file()
    assert not (tmp_path / ".conveyor").exists()
    # part 4: the continuous-training story, told in words, in its own project
    story = home / "ct-story"
    assert "=== 13. continuous training: the whole story" in out
    assert "income:1 goes straight to production" in out  # first deployment, on span 1
    assert "alert age-drift: the 'age' input drifted: PSI" in out
    assert "The alert came from the first full window of span 3's requests" in out
    assert "trigger retrain-on-drift starts a retrain: alert age-drift fired" in out
    assert "income:2 is promoted to production" in out
    assert "alert accuracy-drop: income:2 is right less often" in out
    assert "trigger retrain-on-accuracy-drop starts a retrain" in out
    assert "income:3 is promoted to production" in out
    assert "trigger manual:retrain starts a retrain with the label bug" in out
    assert "canary income:4 is rolled back (production stays version 3)" in out
    assert "what the controller did, and why" in out and "what the callers got" in out
    last = out.strip().splitlines()[-1]  # the demo ends with the timeline report's path
    assert last == f"timeline report: {story / 'reports' / 'income-timeline.html'}"
    assert (story / "reports" / "income-timeline.html").stat().st_size > 10_000
    assert (story / "metadata.db").is_file() and (story / "conveyor.toml").is_file()
