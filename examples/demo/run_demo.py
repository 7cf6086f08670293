"""What ``make demo`` runs: the demo pipeline through the real CLI, twice, then its story.

1. ``conveyor run`` trains a model on scikit-learn's breast-cancer data;
2. running it again reuses every step from the cache;
3. the run table, the steps of the last run, the model's metrics and its lineage are shown.

Everything lands in ``CONVEYOR_HOME`` (default ``.conveyor/`` here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PIPELINE = Path(__file__).with_name("pipeline.py")


def conveyor(*args: str, capture: bool = False) -> str:
    command = [sys.executable, "-m", "conveyor", *args]
    done = subprocess.run(command, check=False, text=True, capture_output=capture)
    if done.returncode != 0:
        if capture:
            sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"demo: `conveyor {' '.join(args)}` exited {done.returncode}")
    return done.stdout if capture else ""


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def main() -> None:
    banner("1. run the demo pipeline: ingest -> split -> train -> evaluate")
    conveyor("run", str(PIPELINE))
    banner("2. run it again: nothing changed, so every step comes from the cache")
    second = json.loads(conveyor("run", str(PIPELINE), "--json", capture=True))
    print(
        f"run {second['run_id']}: "
        + ", ".join(f"{s['name']} {s['status']}" for s in second["steps"])
    )
    banner("3. the runs so far")
    conveyor("runs", "list", "--limit", "5")
    banner(f"4. the steps of run {second['run_id']} and why each was cached")
    conveyor("runs", "show", str(second["run_id"]))
    shown = json.loads(conveyor("runs", "show", str(second["run_id"]), "--json", capture=True))
    steps = {s["step"]: s for s in shown["steps"]}
    model = steps["train"]["outputs"]["output"]
    metrics = steps["evaluate"]["outputs"]["output"]["properties"]
    banner("5. the model's metrics on held-out data")
    for name, value in metrics.items():
        print(f"  {name:10s} {value:.4f}" if isinstance(value, float) else f"  {name}: {value}")
    banner(f"6. lineage of the model (artifact {model['id']}): which data and steps made it")
    conveyor("lineage", f"artifact:{model['id']}", "--upstream")
    home = os.environ.get("CONVEYOR_HOME") or str(Path.cwd() / ".conveyor")
    banner("done")
    print(f"results are in {home}: metadata.db (runs and lineage), artifacts/, logs/")
    print(f"the model itself: {model['uri']}")


if __name__ == "__main__":
    main()
