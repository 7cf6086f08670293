"""What ``make demo`` runs: conveyor's pipelines through the real CLI, and what they show.

Part 1 — a first model: scikit-learn's breast-cancer table -> split -> train -> evaluate,
run twice (the second run comes from the cache), then the model's metrics and lineage.

Part 2 — data that arrives in spans: census-like data (examples/census) arrives in four
spans; for each, ingest -> statistics -> schema -> validate against the previous span.
Span 3's population shifts (older, more educated, other working hours): validation blocks it,
and the HTML report says why. Span 4 continues the new normal and passes.

Everything lands in ``CONVEYOR_HOME`` (default ``.conveyor/`` here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
    banner(f"5. census data arrives in {SPANS} spans; span {DRIFTING_SPAN} drifts")
    drift = [f"{span}:covariate=1.0" for span in range(DRIFTING_SPAN, SPANS + 1)]
    generate = [sys.executable, str(CENSUS / "generate.py"), str(data), "--spans", str(SPANS)]
    subprocess.run([*generate, *(a for d in drift for a in ("--drift", d))], check=True)
    verdicts = []
    for span in range(1, SPANS + 1):
        banner(f"6.{span} span {span} arrives: ingest -> statistics -> schema -> validate")
        params = ["-p", f"source={data}", "-p", f"until_span={span}"]
        out = conveyor("run", str(CENSUS / "pipeline.py"), *params, "--json", capture=True,
                       ok_codes=(0, 1))  # fmt: skip
        result = json.loads(out)
        verdicts.append((span, result))
        if result["status"] == "succeeded":
            print(f"span {span}: valid — run {result['run_id']} succeeded")
        else:
            failed = next(s for s in result["steps"] if s["status"] == "failed")
            print(f"span {span}: BLOCKED by step {failed['name']} (run {result['run_id']}):")
            print("  " + (failed["error"] or "").replace("\n", "\n  "))
    banner("7. the runs so far")
    conveyor("runs", "list", "--limit", "10")
    banner("8. the census dataset: versions, spans and the runs that used them")
    conveyor("data", "list", "--name", "census")
    last = verdicts[-1][1]
    shown = json.loads(conveyor("runs", "show", str(last["run_id"]), "--json", capture=True))
    stats = next(s for s in shown["steps"] if s["step"] == "statistics")["outputs"]["output"]
    banner(f"9. statistics of span {SPANS} as a report people look at")
    conveyor("show", f"artifact:{stats['id']}")
    summary = ", ".join(f"span {s}: {r['status']}" for s, r in verdicts)
    banner("done")
    print(summary)


def main() -> None:
    home = Path(os.environ.get("CONVEYOR_HOME") or Path.cwd() / ".conveyor").resolve()
    first_model()
    census_spans(home)
    print(f"results are in {home}: metadata.db (runs and lineage), artifacts/, logs/, reports/")


if __name__ == "__main__":
    main()
