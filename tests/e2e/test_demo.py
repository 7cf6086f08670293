"""`make demo`'s script end to end: the demo pipeline through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

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
        timeout=420,
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
    assert list((home / "reports").glob("*-evaluation.html"))
    assert f"results are in {home}" in out
    assert (home / "metadata.db").is_file()
    assert not (tmp_path / ".conveyor").exists()
