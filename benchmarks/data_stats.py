"""Dataset statistics: conveyor (DuckDB, out of core) vs. pandas, side by side in one run.

Generates ROWS x 20 columns (15 numeric, 5 categorical; seeded) as Parquet in a temporary
folder, written chunk by chunk so generation itself stays memory-bounded, then measures each
contender in a fresh Python process so that its peak memory is its own (``VmHWM`` of
``/proc/self/status``: ``ru_maxrss`` would not do, Linux carries the parent's peak, here the
generator's ~570 MiB, over into the child):

- **conveyor**: ``compute_statistics(path)`` — count, missing, mean, std, min, max, zeros,
  7 quantiles, equal-width and quantile histograms per numeric column; distinct, top-20 and
  average length per categorical column.
- **pandas**: ``read_parquet`` + ``describe(include="all")`` + ``value_counts()`` per
  categorical column.

    python benchmarks/data_stats.py [--rows 10000000] [--repeat 3] [--threads N]
                                    [--memory-limit 1GB]

Each contender runs ``--repeat`` times (alternating, so that a busy machine slows both alike);
the table shows each run and the medians, and the speed-up is the ratio of the median times.

Goals (issue 3): conveyor >= 5x faster than pandas with <= 1/4 of its peak memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CHUNK_ROWS = 1_000_000
CATEGORIES = {"country": 40, "device": 5, "plan": 12, "city": 2_000, "campaign": 20_000}

PEAK_MEMORY = """
import json, resource, sys, time


def peak_kb():
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
"""

CONVEYOR_CHILD = (
    PEAK_MEMORY
    + """
began = time.perf_counter()
from conveyor.data.statistics import compute_statistics
stats = compute_statistics(sys.argv[1], threads=THREADS, memory_limit=MEMORY_LIMIT)
seconds = time.perf_counter() - began
usage = resource.getrusage(resource.RUSAGE_SELF)
cpu = usage.ru_utime + usage.ru_stime
print(json.dumps({"seconds": seconds, "cpu": cpu, "rss_kb": peak_kb()}))
"""
)

PANDAS_CHILD = (
    PEAK_MEMORY
    + """
began = time.perf_counter()
import pandas as pd
frame = pd.read_parquet(sys.argv[1])
summary = frame.describe(include="all")
counts = {c: frame[c].value_counts() for c in CATEGORICAL}
seconds = time.perf_counter() - began
usage = resource.getrusage(resource.RUSAGE_SELF)
cpu = usage.ru_utime + usage.ru_stime
print(json.dumps({"seconds": seconds, "cpu": cpu, "rss_kb": peak_kb()}))
"""
)


def _chunk(rng: np.random.Generator, rows: int, offset: int) -> pa.Table:
    """One chunk of the benchmark table: 15 numeric and 5 categorical columns."""
    columns: dict[str, pa.Array] = {}
    for i in range(5):  # normal floats with 1% NaN
        values = rng.normal(10 * i, 1 + i, rows)
        values[rng.random(rows) < 0.01] = np.nan
        columns[f"normal_{i}"] = pa.array(values)
    for i in range(3):  # skewed, heavy right tail
        columns[f"lognormal_{i}"] = pa.array(rng.lognormal(0, 1 + i / 2, rows))
    for i in range(4):  # small integers with many zeros and 2% nulls
        counts = rng.poisson(1 + 2 * i, rows)
        columns[f"count_{i}"] = pa.array(counts, mask=rng.random(rows) < 0.02)
    columns["amount"] = pa.array(np.round(rng.exponential(50, rows), 2))
    columns["uniform"] = pa.array(rng.random(rows))
    columns["row_id"] = pa.array(np.arange(offset, offset + rows, dtype=np.int64))
    for name, cardinality in CATEGORIES.items():
        codes = np.minimum(rng.zipf(1.3, rows), cardinality) - 1
        labels = pa.array([f"{name}_{k}" for k in range(cardinality)])
        missing = rng.random(rows) < 0.01
        columns[name] = pa.DictionaryArray.from_arrays(pa.array(codes, mask=missing), labels)
        columns[name] = columns[name].cast(pa.string())
    return pa.table(columns)


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """Write ``rows`` rows to ``path`` in chunks of ``CHUNK_ROWS`` (one row group each)."""
    rng = np.random.default_rng(seed)
    writer: pq.ParquetWriter | None = None
    try:
        for offset in range(0, rows, CHUNK_ROWS):
            table = _chunk(rng, min(CHUNK_ROWS, rows - offset), offset)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def measure(code: str, path: Path) -> dict[str, float]:
    """Run ``code`` in a fresh interpreter on ``path``; its JSON line, parsed."""
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"child failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each contender")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--memory-limit", default="1GB")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.parquet"
        began = time.perf_counter()
        generate(path, args.rows, args.seed)
        size_mb = path.stat().st_size / 2**20
        print(
            f"generated {args.rows:,} rows x 20 columns ({size_mb:,.0f} MiB Parquet) "
            f"in {time.perf_counter() - began:.1f} s"
        )
        conveyor_code = CONVEYOR_CHILD.replace("THREADS", repr(args.threads))
        conveyor_code = conveyor_code.replace("MEMORY_LIMIT", repr(args.memory_limit))
        pandas_code = PANDAS_CHILD.replace("CATEGORICAL", repr(list(CATEGORIES)))
        runs: dict[str, list[dict[str, float]]] = {"conveyor": [], "pandas": []}
        for _ in range(max(1, args.repeat)):
            runs["conveyor"].append(measure(conveyor_code, path))
            runs["pandas"].append(measure(pandas_code, path))
    _report(runs)
    return 0


def _median(results: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


def _row(name: str, result: dict[str, float]) -> str:
    rss = result["rss_kb"] / 1024
    return f"{name:18} {result['seconds']:>10.2f} {result['cpu']:>10.2f} {rss:>15,.0f}"


def _report(runs: dict[str, list[dict[str, float]]]) -> None:
    print(f"{'':18} {'time (s)':>10} {'CPU (s)':>10} {'peak RSS (MiB)':>15}")
    for name, results in runs.items():
        for k, result in enumerate(results, 1):
            print(_row(f"{name} run {k}", result))
    ours, theirs = _median(runs["conveyor"]), _median(runs["pandas"])
    print(_row("conveyor median", ours))
    print(_row("pandas median", theirs))
    speedup = theirs["seconds"] / ours["seconds"]
    memory = ours["rss_kb"] / theirs["rss_kb"]
    print(f"speed-up: {speedup:.1f}x (goal >= 5x); memory: {memory:.2f} of pandas' (goal <= 0.25)")


if __name__ == "__main__":
    raise SystemExit(main())
