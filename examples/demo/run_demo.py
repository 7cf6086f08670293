"""What ``make demo`` runs: conveyor's pipelines through the real CLI, and what they show.

Part 1 — a first model: scikit-learn's breast-cancer table -> split -> train -> evaluate,
run twice (the second run comes from the cache), then the model's metrics and lineage.

Part 2 — the whole offline loop on data that arrives in spans: census-like data
(examples/census) arrives in four spans; for each, ingest -> statistics -> schema -> validate
against the previous span -> transform -> tune -> train -> explain -> evaluate against the
production model -> register. Span 1's model becomes production; span 2's candidate is
compared with it on the same data and blessed or not, with every reason. Span 3's population
shifts (older, more educated, other working hours): validation blocks it before any training.
Span 4 continues the new normal, passes validation, and is compared with production.

Everything lands in ``CONVEYOR_HOME`` (default ``.conveyor/`` here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FIRST_MODEL = HERE / "pipeline.py"
CENSUS = HERE.parent / "census"
SPANS = 4
DRIFTING_SPAN = 3


def conveyor(*args: str, capture: bool = False, ok_codes: tuple[int, ...] = (0,)) -> str:
    command = [sys.executable, "-m", "conveyor", *args]
    done = subprocess.run(command, check=False, text=True, capture_output=capture)
    if done.returncode not in ok_codes:
        if capture:
            sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"demo: `conveyor {' '.join(args)}` exited {done.returncode}")
    return done.stdout if capture else ""


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def first_model() -> None:
    banner("1. run the first pipeline: ingest -> split -> train -> evaluate")
    conveyor("run", str(FIRST_MODEL))
    banner("2. run it again: nothing changed, so every step comes from the cache")
    second = json.loads(conveyor("run", str(FIRST_MODEL), "--json", capture=True))
    steps = ", ".join(f"{s['name']} {s['status']}" for s in second["steps"])
    print(f"run {second['run_id']}: {steps}")
    shown = json.loads(conveyor("runs", "show", str(second["run_id"]), "--json", capture=True))
    outputs = {s["step"]: s["outputs"] for s in shown["steps"]}
    model = outputs["train"]["output"]
    banner("3. the model's metrics on held-out data")
    for name, value in outputs["evaluate"]["output"]["properties"].items():
        print(f"  {name:10s} {value:.4f}" if isinstance(value, float) else f"  {name}: {value}")
    banner(f"4. lineage of the model (artifact {model['id']}): which data and steps made it")
    conveyor("lineage", f"artifact:{model['id']}", "--upstream")


def census_spans(home: Path) -> None:
    data = home / "demo-data" / "census"
    banner(
        f"5. census data arrives in {SPANS} spans; from span {DRIFTING_SPAN} the population shifts"
    )
    drift = [f"{span}:covariate=1.0" for span in range(DRIFTING_SPAN, SPANS + 1)]
    generate = [sys.executable, str(CENSUS / "generate.py"), str(data), "--spans", str(SPANS)]
    subprocess.run([*generate, *(a for d in drift for a in ("--drift", d))], check=True)
    verdicts = []
    for span in range(1, SPANS + 1):
        banner(
            f"6.{span} span {span}: ingest -> statistics -> schema -> validate -> transform -> "
            "tune -> train -> explain -> evaluate vs production -> register"
        )
        params = ["-p", f"source={data}", "-p", f"until_span={span}"]
        out = conveyor("run", str(CENSUS / "training.py"), *params, "--json", capture=True,
                       ok_codes=(0, 1))  # fmt: skip
        result = json.loads(out)
        verdicts.append((span, tell_span(span, result)))
    banner("7. the runs so far")
    conveyor("runs", "list", "--limit", "10")
    banner("8. the census dataset: versions, spans and the runs that used them")
    conveyor("data", "list", "--name", "census")
    banner("9. the model registry: every version, and who holds production")
    conveyor("models", "list")
    conveyor("models", "history", "census")
    banner("done")
    for span, verdict in verdicts:
        print(f"span {span}: {verdict}")


def _outputs(run_id: int) -> dict[str, dict[str, Any]]:
    shown = json.loads(conveyor("runs", "show", str(run_id), "--json", capture=True))
    return {s["step"]: s for s in shown["steps"]}


def tell_span(span: int, result: dict[str, Any]) -> str:
    """Print what the run of one span decided, in words; return a one-line verdict."""
    steps = _outputs(result["run_id"])
    failed = [s for s in steps.values() if s["status"] == "failed"]
    if failed:
        step = failed[0]
        print(f"span {span}: BLOCKED by step {step['step']} (run {result['run_id']}):")
        print("  " + (step["error"] or "").replace("\n", "\n  "))
        print("  nothing was trained; production is unchanged")
        return f"blocked by {step['step']}"
    evaluation = steps["evaluate"]["outputs"]["evaluation"]
    blessing = steps["evaluate"]["outputs"]["blessing"]["properties"]
    metrics = evaluation["properties"]["metrics"]
    print(f"span {span}: candidate on this span's eval split: " + ", ".join(
        f"{name} {metrics[name]:.3f}" for name in ("accuracy", "roc_auc", "f1")))  # fmt: skip
    print(f"  {blessing['note']}")
    conveyor("show", f"artifact:{evaluation['id']}")
    verdict = "blessed and promoted to production" if blessing["blessed"] else "NOT blessed"
    print(f"  decision: {verdict}")
    if not blessing["blessed"]:
        log = Path(steps["register"]["log_uri"]).read_text().strip().splitlines()[-1]
        print(f"  why: {log}")
    return verdict


def main() -> None:
    home = Path(os.environ.get("CONVEYOR_HOME") or Path.cwd() / ".conveyor").resolve()
    first_model()
    census_spans(home)
    print(f"results are in {home}: metadata.db (runs and lineage), artifacts/, logs/, reports/")


if __name__ == "__main__":
    main()
