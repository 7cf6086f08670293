"""``kill -9`` of a process that records predictions continuously: everything recorded more
than one flush interval (plus a margin) before the kill is in the log, and DuckDB never sees a
partial or corrupt file."""

from __future__ import annotations

import datetime as dt
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from conveyor.serving.prediction_log import PredictionLog, PredictionRecord

pytestmark = pytest.mark.slow

FLUSH_INTERVAL_S = 0.2
MARGIN_S = 0.5
THREADS = 3

CHILD = """
import datetime as dt, sys, threading, time
from conveyor.serving.prediction_log import PredictionLog, PredictionRecord

root, run, interval, threads = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
log = PredictionLog(root, flush_interval_s=interval, max_batch=2000)
payload = {"x": [[float(i) for i in range(20)] for _ in range(4)]}

def work(t):
    i = 0
    while True:
        log.record(PredictionRecord(
            f"{run}-{t}-{i}", "m", "1", "production", payload, {"y": [i]}, 0.3,
            dt.datetime.now(dt.UTC), "v2"))
        i += 1
        if i % 20 == 0:
            time.sleep(0.001)

for t in range(threads):
    threading.Thread(target=work, args=(t,), daemon=True).start()
print("started", flush=True)
time.sleep(600)
"""


def _run_and_kill(root: Path, run: str, seconds: float) -> float:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(CHILD),
            str(root),
            run,
            str(FLUSH_INTERVAL_S),
            str(THREADS),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started", (
            proc.stderr.read() if proc.stderr else ""
        )
        time.sleep(seconds)
        killed_at = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return killed_at


def test_sigkill_loses_at_most_the_last_flush_interval(tmp_path: Path) -> None:
    root = tmp_path / "predictions"
    rng = random.Random(5)
    kills: dict[str, float] = {}
    for k in range(3):
        run = f"run{k}"
        kills[run] = _run_and_kill(root, run, 1.0 + rng.random() * 1.5)

    # every visible file is complete and readable on its own ...
    files = sorted(root.rglob("*.parquet"))
    assert files, "nothing was flushed"
    for path in files:
        assert not path.name.startswith(".")
        pq.read_table(path)
    # ... and DuckDB reads the whole log without error
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    rows = con.execute(
        f"SELECT request_id, time FROM read_parquet('{root}/**/*.parquet', hive_partitioning=true)"
    ).fetchall()
    assert len(rows) == len({r[0] for r in rows}), "duplicates in the log"

    present: dict[tuple[str, int], dict[int, dt.datetime]] = {}
    for request_id, when in rows:
        run, thread, i = request_id.split("-")
        present.setdefault((run, int(thread)), {})[int(i)] = when
    for run, killed_at in kills.items():
        cutoff = dt.datetime.fromtimestamp(killed_at - FLUSH_INTERVAL_S - MARGIN_S, dt.UTC)
        for thread in range(THREADS):
            seen = present.get((run, thread), {})
            assert seen, f"{run} thread {thread}: nothing logged"
            # flushes are in order: what is present is a prefix of what was recorded ...
            assert sorted(seen) == list(range(len(seen))), f"{run} thread {thread}: gap"
            # ... reaching past the cutoff, so nothing older than the cutoff was lost
            last = seen[len(seen) - 1]
            assert last >= cutoff, f"{run} thread {thread}: lost records back to {last} < {cutoff}"

    # a new log on the same root sweeps any temporary file a killed writer left behind
    with PredictionLog(root, flush_interval_s=0.05) as log:
        log.record(PredictionRecord("probe", "m", "1", "production", {}, {}, 0.0))
    assert not list(root.rglob("*.tmp"))
