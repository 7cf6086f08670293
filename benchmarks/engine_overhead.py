"""Engine overhead: a 20-step chain of trivial steps, conveyor's local runner vs. direct calls.

Prints, per step, how much longer the local runner takes than calling the same functions one
after the other in this process: once cold (nothing cached: every step runs in a worker
process, its output is stored and recorded) and once fully cached. Interpreter start is
excluded: the worker processes are started and warmed before the clock starts (their start
time is printed separately).

    python benchmarks/engine_overhead.py [--steps 20] [--repeat 3]

Goal on a 2-core machine: <= 30 ms per step cold, <= 3 ms per step cached.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from conveyor.config import load_settings
from conveyor.core.loader import load_pipeline
from conveyor.runners.local import LocalRunner
from conveyor.runners.worker_pool import WorkerPool
from conveyor.store.workspace import Workspace

CHAIN = """
from conveyor import component, pipeline


@component
def step(values: list[int], k: int) -> list[int]:
    return [v + k for v in values]


@component
def start(salt: int) -> list[int]:
    return [salt, 1, 2]


@pipeline
def chain(salt: int = 0, steps: int = 20) -> None:
    values = start(salt)
    for k in range(steps - 1):
        values = step(values, k=k)
"""


def direct_seconds(module: object, steps: int, salt: int) -> float:
    start_fn = module.start.fn  # type: ignore[attr-defined]
    step_fn = module.step.fn  # type: ignore[attr-defined]
    began = time.perf_counter()
    values = start_fn(salt)
    for k in range(steps - 1):
        values = step_fn(values, k)
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "chain.py").write_text(textwrap.dedent(CHAIN))
        pipe = load_pipeline(str(folder / "chain.py"))
        module = sys.modules[pipe.fn.__module__]
        workspace = Workspace.open(load_settings(home=folder / "home"))
        pool = WorkerPool(1)
        began = time.perf_counter()
        pool.warm()
        pool_start = time.perf_counter() - began
        runner = LocalRunner(workspace, max_workers=1, pool=pool)
        cold, cached, direct = [], [], []
        try:
            for salt in range(args.repeat):
                ir = pipe.build({"salt": salt, "steps": args.steps})
                began = time.perf_counter()
                result = runner.run(ir)
                cold.append(time.perf_counter() - began)
                assert result.ok, result.error
                began = time.perf_counter()
                result = runner.run(ir)
                cached.append(time.perf_counter() - began)
                assert result.ok and all(s == "cached" for s in result.step_status.values())
                direct.append(direct_seconds(module, args.steps, salt))
        finally:
            pool.close()
            workspace.close()

    base = statistics.median(direct)
    per_cold = (statistics.median(cold) - base) / args.steps * 1000
    per_cached = (statistics.median(cached) - base) / args.steps * 1000
    print(f"chain of {args.steps} trivial steps, median of {args.repeat} runs")
    print(f"  direct calls in one process : {base * 1000:9.3f} ms in all")
    print(f"  conveyor local runner, cold : {statistics.median(cold) * 1000:9.1f} ms in all")
    print(f"  conveyor local runner, cached: {statistics.median(cached) * 1000:8.1f} ms in all")
    print(f"  worker start (excluded)     : {pool_start * 1000:9.1f} ms")
    print(f"overhead per step, cold   : {per_cold:6.2f} ms  (goal <= 30 ms)")
    print(f"overhead per step, cached : {per_cached:6.2f} ms  (goal <= 3 ms)")
    print(f"ratio runner/direct, cold : {statistics.median(cold) / max(base, 1e-9):,.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
