"""Pipeline files the runner tests write into temporary folders and edit."""

DIAMOND = """
import os
import time
from conveyor import component, pipeline


@component
def a(n: int = 3) -> list[int]:
    return list(range(n))


@component
def b(values: list[int], factor: int = 2) -> list[int]:
    time.sleep(SLEEP)
    return [v * factor for v in values]


@component
def c(values: list[int]) -> list[int]:
    time.sleep(SLEEP)
    return [v + 100 for v in values]  # C-BODY


@component
def d(left: list[int], right: list[int]) -> dict:
    print("combining", len(left), "and", len(right))
    return {"total": sum(left) + sum(right)}


@pipeline
def diamond(n: int = 3, factor: int = 2) -> None:
    first = a(n)
    d(b(first, factor=factor), c(first))
"""


def diamond_source(sleep: float = 0.0, c_body: str = "[v + 100 for v in values]") -> str:
    """The diamond pipeline A -> B, A -> C, B + C -> D with a sleep in B and C."""
    return f"SLEEP = {sleep!r}\n" + DIAMOND.replace("[v + 100 for v in values]", c_body)


FAILING = """
import os
from pathlib import Path
from conveyor import component, pipeline

FLAG = Path(os.environ["FAIL_FLAG"])


@component
def source() -> list[int]:
    return [1, 2, 3]


@component
def fragile(values: list[int]) -> list[int]:
    if FLAG.exists():
        raise ValueError("fragile step was told to fail")
    return values


@component
def after(values: list[int]) -> int:
    return sum(values)


@component
def independent(values: list[int]) -> int:
    return len(values)


@pipeline
def failing() -> None:
    data = source()
    after(fragile(data))
    independent(data)
"""

SLOW = """
import os
import time
from pathlib import Path
from conveyor import component, pipeline


@component
def first() -> list[int]:
    return [1, 2, 3]


@component
def slow(values: list[int]) -> list[int]:
    Path(os.environ["STARTED_FLAG"]).write_text("started")
    time.sleep(60)
    return values


@pipeline
def slow_pipeline() -> None:
    slow(first())
"""
