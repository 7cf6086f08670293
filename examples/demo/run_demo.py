"""What ``make demo`` runs: conveyor's pipelines through the real CLI, and what they show.

Part 1 — a first model: scikit-learn's breast-cancer table -> split -> train -> evaluate,
run twice (the second run comes from the cache), then the model's metrics and lineage.

Part 2 — the whole offline loop on data that arrives in spans: census-like data
(examples/census) arrives in four spans; for each, ingest -> statistics -> schema -> validate
against the previous span -> transform -> tune -> train -> explain -> evaluate against the
production model -> register. Span 1's model becomes production; span 2's candidate is
compared with it on the same data and blessed or not, with every reason. Span 3's population
shifts (older, more educated, other working hours): validation blocks it before any training.
Span 4 continues the new normal, passes validation, and is compared with production. Before
a candidate is registered, ``infra_validate`` serves it with ``conveyor serve`` in a separate
process and checks that canary requests get the offline predictions back.

Part 3 — serving: ``conveyor serve`` runs in its own process on a free port; a real HTTP client
sends one request per row of a later span (span 5), over the Open Inference Protocol and TF
Serving's REST API, posts the true labels as feedback, and the server is stopped with SIGTERM
(a graceful shutdown flushes the prediction log). The log and its join with the feedback are
then read with the library.

Part 4 — continuous training, the whole story (``examples/ct_story``): a model is trained and
deployed on span 1 by the controller; requests of later spans flow through a real server with
their ground truth arriving later; a covariate shift and then a concept drift appear; the
controller detects each, retrains on the new span, canaries the new model and promotes it; an
injected bad candidate is rolled back by itself. It ends with a summary table and the path of
the timeline report. Its project (policy, data, workspace) is ``CONVEYOR_HOME/ct-story``.

Everything lands in ``CONVEYOR_HOME`` (default ``.conveyor/`` here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from demo_serving import serve_and_collect_feedback

HERE = Path(__file__).resolve().parent
FIRST_MODEL = HERE / "pipeline.py"
EXAMPLES = HERE.parent
CENSUS = EXAMPLES / "census"
SPANS = 4
DRIFTING_SPAN = 3
ROWS = 3000  # per span: enough for stable drift scores, small enough for the 5-minute budget
TRIALS = 3  # tuning trials per span


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


def census_spans(home: Path) -> list[tuple[int, str]]:
    data = home / "demo-data" / "census"
    banner(
        f"5. census data arrives in {SPANS} spans; from span {DRIFTING_SPAN} the population shifts"
    )
    drift = [f"{span}:covariate=1.0" for span in range(DRIFTING_SPAN, SPANS + 1)]
    generate = [sys.executable, str(CENSUS / "generate.py"), str(data), "--spans", str(SPANS)]
    generate += ["--rows", str(ROWS)]
    subprocess.run([*generate, *(a for d in drift for a in ("--drift", d))], check=True)
    verdicts = []
    for span in range(1, SPANS + 1):
        banner(
            f"6.{span} span {span}: ingest -> statistics -> schema -> validate -> transform -> "
            "tune -> train -> explain -> evaluate vs production -> serve check -> register"
        )
        params = ["-p", f"source={data}", "-p", f"until_span={span}", "-p", f"n_trials={TRIALS}"]
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
    return verdicts


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
        stopped = "nothing was trained" if step["step"] == "validate" else "nothing was registered"
        print(f"  {stopped}; production is unchanged")
        return f"blocked by {step['step']}"
    evaluation = steps["evaluate"]["outputs"]["evaluation"]
    blessing = steps["evaluate"]["outputs"]["blessing"]["properties"]
    metrics = evaluation["properties"]["metrics"]
    print(f"span {span}: candidate on this span's eval split: " + ", ".join(
        f"{name} {metrics[name]:.3f}" for name in ("accuracy", "roc_auc", "f1")))  # fmt: skip
    print(f"  {blessing['note']}")
    served = steps["infra_validate"]["outputs"]["output"]["properties"]
    print(
        f"  serving check: {served['requests']} canary requests to `conveyor serve` answered "
        f"as offline (p99 {served['latency_ms_p99']:.0f} ms)"
    )
    conveyor("show", f"artifact:{evaluation['id']}")
    verdict = "blessed and promoted to production" if blessing["blessed"] else "NOT blessed"
    print(f"  decision: {verdict}")
    if not blessing["blessed"]:
        log = Path(steps["register"]["log_uri"]).read_text().strip().splitlines()[-1]
        print(f"  why: {log}")
    return verdict


def continuous_training(home: Path) -> None:
    """Part 4: the continuous-training story, in its own project under ``home``."""
    sys.path.insert(0, str(EXAMPLES))  # ct_story is a package of the examples folder
    from ct_story import run_story

    run_story(home / "ct-story", part="13")


def main() -> None:
    home = Path(os.environ.get("CONVEYOR_HOME") or Path.cwd() / ".conveyor").resolve()
    first_model()
    verdicts = census_spans(home)
    serve_and_collect_feedback(home / "demo-data" / "live", CENSUS / "generate.py")
    banner("the offline loop and serving, in short")
    for span, verdict in verdicts:
        print(f"span {span}: {verdict}")
    print(f"results are in {home}: metadata.db (runs and lineage), artifacts/, logs/, reports/")
    continuous_training(home)  # last: it ends with its summary table and the report's path


if __name__ == "__main__":
    main()
