"""Drift on 1M vs 1M rows: conveyor vs Evidently's DataDriftPreset vs a plain scipy script.

Generates a reference and a current table (default 1,000,000 rows each, 20 columns: 15
numeric, 5 categorical, 5 of them shifted in the current table; seeded), writes them as
Parquet, and times, in one run, from the same files:

- conveyor: ``dataset_drift(reference.parquet, current.parquet, method="auto")``,
  end to end (Parquet read included) and on tables already in memory;
- a plain scipy script (the floor): pandas ``read_parquet``, then ``ks_2samp`` per numeric
  column and ``chisquare`` per categorical one;
- Evidently 0.7.23's ``Report([DataDriftPreset()])``, in its own virtual environment
  (``benchmarks/.venv-evidently``, created from ``requirements-evidently.txt`` when missing),
  run in a subprocess that reads the same files and prints its verdicts as JSON.

Prints the times, the ratios (Evidently / conveyor, scipy / conveyor) and whether the
per-column verdicts agree with Evidently's (and with the truth: which columns were shifted).

    python benchmarks/drift.py [--rows 1000000] [--repeat 3] [--skip-evidently]

Goals: >= 30x faster than Evidently with the same verdict per column; faster than scipy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import venv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import stats

from conveyor.data.drift import DriftReport, dataset_drift

HERE = Path(__file__).resolve().parent
EVIDENTLY_VENV = HERE / ".venv-evidently"
EVIDENTLY_REQUIREMENTS = HERE / "requirements-evidently.txt"
NUMERIC = [f"num_{i:02d}" for i in range(15)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
SHIFTED = {"num_00", "num_05", "num_10", "cat_0", "cat_3"}

EVIDENTLY_SCRIPT = textwrap.dedent(
    """
    import json, sys, time, warnings
    warnings.filterwarnings("ignore")
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    began = time.perf_counter()
    reference = pd.read_parquet(sys.argv[1])
    current = pd.read_parquet(sys.argv[2])
    loaded = time.perf_counter()
    snapshot = Report([DataDriftPreset()], include_tests=True).run(current, reference)
    done = time.perf_counter()
    result = snapshot.dict()
    columns = {}
    for metric in result["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("ValueDrift"):
            columns[config["column"]] = {"method": config["method"], "score": metric["value"]}
    for test in result["tests"]:
        column = test["metric_config"]["params"].get("column")
        if column in columns:
            columns[column]["drifted"] = test["status"] == "FAIL"
    print(json.dumps({"load_s": loaded - began, "run_s": done - loaded, "columns": columns}))
    """
)


# -- data ------------------------------------------------------------------------------


def _numeric(rng: np.random.Generator, i: int, n: int, shifted: bool) -> np.ndarray:
    shape = i % 5
    if shape == 0:
        values = rng.normal(50.0 + (2.5 if shifted else 0.0), 10.0, n)  # mean +0.25 std
    elif shape == 1:
        values = rng.lognormal(3.0 + (0.3 if shifted else 0.0), 0.5, n)
    elif shape == 2:
        values = rng.uniform(0.0, 100.0, n)
    elif shape == 3:
        values = rng.integers(18, 90, n).astype(np.float64)  # ages: 72 distinct values
    else:
        values = rng.gamma(2.0, 2.0 * (1.4 if shifted else 1.0), n)  # wider spread
    values[rng.random(n) < 0.01] = np.nan  # 1% missing
    return values


def _categorical(rng: np.random.Generator, i: int, n: int, shifted: bool) -> pa.Array:
    size = (4, 8, 12, 25, 50)[i]
    weights = np.linspace(1.0, 3.0, size)
    if shifted:
        weights = weights[::-1] if i == 0 else np.where(np.arange(size) < 3, weights * 4, weights)
    codes = rng.choice(size, n, p=weights / weights.sum()).astype(np.int32)
    labels = pa.array([f"{'abcde'[i]}{k:02d}" for k in range(size)])
    return pa.DictionaryArray.from_arrays(codes, labels).cast(pa.string())


def make_table(rows: int, seed: int, *, shifted: bool) -> pa.Table:
    """One table of the benchmark's shape; ``shifted`` moves the columns in SHIFTED."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for i, name in enumerate(NUMERIC):
        columns[name] = _numeric(rng, i, rows, shifted and name in SHIFTED)
    for i, name in enumerate(CATEGORICAL):
        columns[name] = _categorical(rng, i, rows, shifted and name in SHIFTED)
    return pa.table(columns)


def write_data(folder: Path, rows: int, seed: int) -> tuple[Path, Path]:
    reference, current = folder / "reference.parquet", folder / "current.parquet"
    pq.write_table(make_table(rows, seed, shifted=False), reference)
    pq.write_table(make_table(rows, seed + 1, shifted=True), current)
    return reference, current


# -- contenders ------------------------------------------------------------------------


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Best wall time of ``repeat`` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        began = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - began)
    return best, result


def scipy_script(reference: Path, current: Path) -> dict[str, bool]:
    """What a plain script does: pandas + ks_2samp / chisquare per column, p < 0.05."""
    ref, cur = pd.read_parquet(reference), pd.read_parquet(current)
    verdicts: dict[str, bool] = {}
    for name in NUMERIC:
        p_value = stats.ks_2samp(ref[name].dropna(), cur[name].dropna()).pvalue
        verdicts[name] = bool(p_value < 0.05)
    for name in CATEGORICAL:
        ref_counts, cur_counts = ref[name].value_counts(), cur[name].value_counts()
        keys = ref_counts.index.union(cur_counts.index)
        ref_counts = ref_counts.reindex(keys, fill_value=0)
        cur_counts = cur_counts.reindex(keys, fill_value=0)
        expected = ref_counts * (cur_counts.sum() / ref_counts.sum())
        with np.errstate(divide="ignore", invalid="ignore"):
            p_value = stats.chisquare(cur_counts, expected).pvalue
        verdicts[name] = bool(p_value < 0.05)
    return verdicts


def evidently_python() -> tuple[Path | None, str]:
    """The Evidently venv's interpreter, creating the venv if needed; or why it cannot."""
    python = EVIDENTLY_VENV / "bin" / "python"
    probe = [str(python), "-c", "import evidently"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python, ""
    print(f"installing Evidently into {EVIDENTLY_VENV} (-r {EVIDENTLY_REQUIREMENTS.name}) ...")
    try:
        if not python.exists():
            venv.create(EVIDENTLY_VENV, with_pip=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(EVIDENTLY_REQUIREMENTS)],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        lines = (getattr(exc, "stderr", "") or str(exc)).strip().splitlines()
        return None, (
            "NOT RUN - Evidently could not be installed from the package index here "
            f"({lines[-1] if lines else exc}); the figures above stand without it."
        )
    return python, ""


def run_evidently(reference: Path, current: Path) -> tuple[dict[str, Any] | None, str]:
    python, why = evidently_python()
    if python is None:
        return None, why
    proc = subprocess.run(
        [str(python), "-c", EVIDENTLY_SCRIPT, str(reference), str(current)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return None, f"NOT RUN - Evidently failed: {lines[-1] if lines else proc.returncode}"
    return json.loads(proc.stdout.strip().splitlines()[-1]), ""


# -- report ----------------------------------------------------------------------------


def compare_verdicts(ours: DriftReport, theirs: dict[str, Any]) -> list[str]:
    differences = []
    for name, col in ours.columns.items():
        other = theirs["columns"].get(name)
        if other is None or other.get("drifted") != col.drifted:
            differences.append(f"{name}: conveyor {col.drifted} ({col.method}), Evidently {other}")
    return differences


def print_results(
    rows: int, times: dict[str, float], report: DriftReport, scipy_verdicts: dict[str, bool]
) -> None:
    print(f"\n{rows:,} vs {rows:,} rows x 20 columns (15 numeric, 5 categorical), 5 shifted")
    print(f"{'':38} {'seconds':>9}")
    for label, seconds in times.items():
        print(f"{label:38} {seconds:9.2f}")
    flagged = sorted(report.drifted_columns)
    print(f"\nconveyor flags: {flagged} (truth: {sorted(SHIFTED)})")
    print(f"conveyor verdicts == truth: {set(flagged) == SHIFTED}")
    scipy_flags = sorted(n for n, v in scipy_verdicts.items() if v)
    print(f"scipy script flags (p < 0.05): {scipy_flags}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per table")
    parser.add_argument("--repeat", type=int, default=3, help="best of N for in-process timings")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--skip-evidently", action="store_true", help="do not run Evidently")
    args = parser.parse_args()
    print(f"cpus: {os.cpu_count()}, python {sys.version.split()[0]}, numpy {np.__version__}")
    with tempfile.TemporaryDirectory(prefix="conveyor-drift-bench-") as tmp:
        began = time.perf_counter()
        reference, current = write_data(Path(tmp), args.rows, args.seed)
        print(f"generated the Parquet files in {time.perf_counter() - began:.1f}s")
        run(reference, current, args)


def run(reference: Path, current: Path, args: argparse.Namespace) -> None:
    times: dict[str, float] = {}
    end_to_end, report = timed(lambda: dataset_drift(reference, current), args.repeat)
    times["conveyor (read + drift)"] = end_to_end
    ref_table, cur_table = pq.read_table(reference), pq.read_table(current)
    times["conveyor (drift on loaded tables)"], _ = timed(
        lambda: dataset_drift(ref_table, cur_table), args.repeat
    )
    times["scipy script (read + ks/chisquare)"], scipy_verdicts = timed(
        lambda: scipy_script(reference, current), args.repeat
    )
    evidently, why = (None, "skipped (--skip-evidently)")
    if not args.skip_evidently:
        print("running Evidently's DataDriftPreset (this takes a while) ...")
        evidently, why = run_evidently(reference, current)
    if evidently is not None:
        times["Evidently (read)"] = evidently["load_s"]
        times["Evidently (DataDriftPreset)"] = evidently["run_s"]
    print_results(args.rows, times, report, scipy_verdicts)
    print(f"scipy / conveyor: {times['scipy script (read + ks/chisquare)'] / end_to_end:.1f}x")
    if evidently is None:
        print(f"Evidently: {why}")
        return
    ratio = (evidently["load_s"] + evidently["run_s"]) / end_to_end
    print(f"Evidently / conveyor (both read + drift): {ratio:.0f}x")
    drift_only = evidently["run_s"] / times["conveyor (drift on loaded tables)"]
    print(f"Evidently / conveyor (drift only): {drift_only:.0f}x")
    differences = compare_verdicts(report, evidently)
    print(f"per-column verdicts agree with Evidently: {not differences}")
    for line in differences:
        print(f"  {line}")


if __name__ == "__main__":
    main()
