"""Serving throughput and latency: conveyor vs ``mlflow models serve`` vs a hand-written FastAPI.

One model (scikit-learn ``LogisticRegression`` on 20 numeric features, fitted on generated
data), one load generator (wrk on loopback, one fixed JSON body per scenario), one server after
another in the same run:

- **conveyor**: ``conveyor serve``, one worker, with what is on by default: the prediction
  log, input validation against the bundle's signature, routing, Prometheus metrics and the
  JSON access log. TF Serving REST (``/v1/models/bench:predict``) and, for the single-row
  scenario, Open Inference Protocol JSON (``/v2/models/bench/infer``);
- **MLflow** 3.x: ``mlflow models serve --env-manager local -w 1`` (``/invocations`` with
  ``dataframe_split``), from ``benchmarks/.venv-mlflow``: on uvicorn's plain stack (what
  ``pip install mlflow`` gives) and on uvloop + httptools;
- **FastAPI floor**: an app that only unpickles the model and predicts (``/predict``), under
  uvicorn, from the same venv: once on uvicorn's plain stack (asyncio + h11, what
  ``pip install fastapi uvicorn`` gives) and once on uvloop + httptools (what conveyor's
  ``serving`` extra installs), so the HTTP stack is like for like.

Scenarios (each a ``--warmup`` run, then a measured ``--duration`` run): one row per request
at 16 connections and at 1 connection (requests/s, p50, p99), 64 rows per request at 16
connections (rows/s). Prints a table, the ratios conveyor / MLflow and conveyor / FastAPI, and
the goals. A run in which any request failed (HTTP status >= 400 or a socket error) is marked
FAILED and its figures must not be quoted.

    python benchmarks/serving.py [--duration 10] [--warmup 2] [--skip-mlflow] [--json out.json]

Goals: >= 15x MLflow's throughput, >= 1.5x the FastAPI floor's, p99 <= 15 ms at 16
connections, p50 <= 1 ms at 1 connection.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table
from serving_servers import (
    FASTAPI_FAST_FLOOR,
    FASTAPI_FLOOR,
    MLFLOW,
    MLFLOW_FAST,
    Contender,
    ServerError,
    conveyor_server,
    fastapi_server,
    mlflow_server,
    post,
    prediction_log_rows,
)
from serving_wrk import Measurement, WrkError, measure, wrk_path

FEATURES = [f"f{i}" for i in range(20)]
BATCH_ROWS = 64


@dataclass(frozen=True)
class Scenario:
    """One load shape: rows per request and concurrent connections."""

    key: str
    label: str
    rows: int
    connections: int


SCENARIOS = (
    Scenario("single_c16", "1 row, 16 conn", 1, 16),
    Scenario("single_c1", "1 row, 1 conn", 1, 1),
    Scenario("batch_c16", f"{BATCH_ROWS} rows, 16 conn", BATCH_ROWS, 16),
)


# -- the model ------------------------------------------------------------------------------


def make_model(seed: int) -> tuple[Any, pd.DataFrame]:
    """LogisticRegression on 20 numeric features (5,000 generated rows); the model and X."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(5000, len(FEATURES))).round(4)
    weights = rng.normal(size=len(FEATURES))
    y = (x @ weights + rng.normal(0.0, 0.5, len(x)) > 0).astype(int)
    frame = pd.DataFrame(x, columns=FEATURES)
    return LogisticRegression(max_iter=1000).fit(frame, y), frame


# -- measuring ------------------------------------------------------------------------------


def check_answers(contender: Contender, rows: np.ndarray, expected: list[int]) -> None:
    """The server's labels for ``rows`` must be the model's own.

    Raises:
        ServerError: The server refused the request or answered other labels.
    """
    labels = contender.labels(post(contender.url, contender.encode(rows, FEATURES)))
    if labels != expected:
        raise ServerError(f"{contender.name} answered {labels[:8]}..., expected {expected[:8]}...")


def run_scenarios(
    contender: Contender,
    bodies: dict[int, np.ndarray],
    scenarios: tuple[Scenario, ...],
    args: argparse.Namespace,
) -> dict[str, Measurement]:
    """Warm up, then measure, every scenario against one running server."""
    results: dict[str, Measurement] = {}
    for scenario in scenarios:
        body = contender.encode(bodies[scenario.rows], FEATURES)
        options = {"connections": scenario.connections, "threads": 2}
        measure(contender.url, body, duration_s=args.warmup, **options)
        result = measure(contender.url, body, duration_s=args.duration, **options)
        results[scenario.key] = result
        state = "ok" if result.ok else f"FAILED ({result.failures} failures)"
        print(
            f"  {contender.name:14} {scenario.label:18} {result.requests_per_s:9.1f} req/s  "
            f"p50 {result.p50_s * 1e3:7.2f} ms  p99 {result.p99_s * 1e3:7.2f} ms  {state}"
        )
    return results


@contextlib.contextmanager
def _timed(name: str) -> Iterator[None]:
    began = time.perf_counter()
    yield
    print(f"  ({name}: {time.perf_counter() - began:.0f} s)")


def run_all(
    workdir: Path, model: Any, frame: pd.DataFrame, args: argparse.Namespace
) -> tuple[dict[str, dict[str, Measurement]], dict[str, str]]:
    """Every contender, one after the other; the measurements and the notes."""
    rng = np.random.default_rng(args.seed + 1)
    bodies = {1: frame.to_numpy()[:1], BATCH_ROWS: frame.to_numpy()[rng.choice(len(frame), 64)]}
    expected = {
        n: [int(v) for v in model.predict(pd.DataFrame(r, columns=FEATURES))]
        for n, r in bodies.items()
    }
    results: dict[str, dict[str, Measurement]] = {}
    notes: dict[str, str] = {}

    def bench(contender: Contender, scenarios: tuple[Scenario, ...]) -> None:
        for n, rows in bodies.items():
            check_answers(contender, rows, expected[n])
        results[contender.name] = run_scenarios(contender, bodies, scenarios, args)

    with _timed("conveyor"):
        with conveyor_server(workdir, model, frame) as (tf, v2):
            bench(tf, SCENARIOS)
            bench(v2, SCENARIOS[:1])
        logged = prediction_log_rows(workdir / "conveyor" / "home")
        notes["conveyor"] = f"prediction log: {logged:,} records written"
        print(f"  {notes['conveyor']}")
    for fast_http in () if args.skip_mlflow else (False, True):
        name = MLFLOW_FAST if fast_http else MLFLOW
        try:
            with (
                _timed(name),
                mlflow_server(workdir, model, frame, fast_http=fast_http) as contender,
            ):
                bench(contender, SCENARIOS)
        except ServerError as exc:
            notes[name] = f"NOT RUN: {exc}"
            print(f"  {name} {notes[name]}")
    for fast_http in () if args.skip_fastapi else (False, True):
        name = FASTAPI_FAST_FLOOR if fast_http else FASTAPI_FLOOR
        try:
            with _timed(name), fastapi_server(workdir, model, fast_http=fast_http) as contender:
                bench(contender, SCENARIOS)
        except ServerError as exc:
            notes[name] = f"NOT RUN: {exc}"
            print(f"  {name} {notes[name]}")
    return results, notes


# -- the report -----------------------------------------------------------------------------


def print_table(console: Console, results: dict[str, dict[str, Measurement]]) -> None:
    table = Table(title="Serving: LogisticRegression, 20 numeric features, wrk on loopback")
    for name, justify in [("server", "left"), ("load", "left"), ("throughput", "right")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for name in ("p50 ms", "p99 ms", "failures"):
        table.add_column(name, justify="right")
    for name, by_key in results.items():
        for scenario in SCENARIOS:
            result = by_key.get(scenario.key)
            if result is None:
                continue
            rate = result.requests_per_s * scenario.rows
            unit = "rows/s" if scenario.rows > 1 else "req/s"
            table.add_row(
                name,
                scenario.label,
                f"{rate:,.0f} {unit}",
                f"{result.p50_s * 1e3:.2f}",
                f"{result.p99_s * 1e3:.2f}",
                "0" if result.ok else f"FAILED: {result.failures}",
            )
    console.print(table)


def _ratio(ours: Measurement | None, theirs: Measurement | None) -> float | None:
    if ours is None or theirs is None or not (ours.ok and theirs.ok):
        return None
    return ours.requests_per_s / theirs.requests_per_s


def ratios(results: dict[str, dict[str, Measurement]]) -> dict[str, dict[str, float | None]]:
    """conveyor's throughput over each other server's, per scenario (None: not comparable)."""
    ours = results.get("conveyor", {})
    out: dict[str, dict[str, float | None]] = {}
    for other in (MLFLOW, MLFLOW_FAST, FASTAPI_FLOOR, FASTAPI_FAST_FLOOR):
        if other in results:
            out[other] = {
                s.key: _ratio(ours.get(s.key), results[other].get(s.key)) for s in SCENARIOS
            }
    return out


def print_ratios_and_goals(
    console: Console,
    results: dict[str, dict[str, Measurement]],
    by_other: dict[str, dict[str, float | None]],
) -> None:
    for other, by_key in by_other.items():
        parts = [
            f"{s.label}: {'n/a' if by_key[s.key] is None else f'{by_key[s.key]:.1f}x'}"
            for s in SCENARIOS
        ]
        console.print(f"conveyor / {other}: " + "; ".join(parts))
    ours = results.get("conveyor", {})
    single, one = ours.get("single_c16"), ours.get("single_c1")
    goals = [
        (
            "throughput >= 15x MLflow (1 row, 16 conn)",
            by_other.get(MLFLOW, {}).get("single_c16"),
            15.0,
            ">=",
        ),
        (
            "throughput >= 15x MLflow on uvloop (1 row, 16 conn)",
            by_other.get(MLFLOW_FAST, {}).get("single_c16"),
            15.0,
            ">=",
        ),
        (
            "throughput >= 1.5x the FastAPI floor (1 row, 16 conn)",
            by_other.get(FASTAPI_FLOOR, {}).get("single_c16"),
            1.5,
            ">=",
        ),
        (
            "throughput >= 1.5x the FastAPI floor on uvloop (1 row, 16 conn)",
            by_other.get(FASTAPI_FAST_FLOOR, {}).get("single_c16"),
            1.5,
            ">=",
        ),
        ("p99 <= 15 ms at 16 conn (ms)", single.p99_s * 1e3 if single else None, 15.0, "<="),
        ("p50 <= 1 ms at 1 conn (ms)", one.p50_s * 1e3 if one else None, 1.0, "<="),
    ]
    for label, value, bound, op in goals:
        if value is None:
            verdict = "n/a"
        else:
            met = value >= bound if op == ">=" else value <= bound
            verdict = f"{value:.2f} {'met' if met else 'MISSED'}"
        console.print(f"goal {label}: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up before each")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--skip-mlflow", action="store_true", help="do not run MLflow")
    parser.add_argument("--skip-fastapi", action="store_true", help="do not run the floor")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    try:
        wrk_path()
    except WrkError as exc:
        sys.exit(str(exc))
    console = Console()
    console.print(f"cpus: {os.cpu_count()}, python {sys.version.split()[0]}")
    model, frame = make_model(args.seed)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="conveyor-serving-bench-") as tmp:
        results, notes = run_all(Path(tmp), model, frame, args)
    print_table(console, results)
    by_other = ratios(results)
    print_ratios_and_goals(console, results, by_other)
    for name, note in notes.items():
        console.print(f"{name}: {note}")
    console.print(f"total {time.perf_counter() - began:.0f} s")
    if args.json is not None:
        document = {
            "results": {n: {k: asdict(m) for k, m in r.items()} for n, r in results.items()},
            "ratios": by_other,
            "notes": notes,
        }
        args.json.write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
