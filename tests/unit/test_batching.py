"""MicroBatcher: no wait when alone, batches what queued, bounded, split back, failures isolated."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from conveyor.modeling.bundle_errors import BundleError
from conveyor.serving.batching import MicroBatcher


@dataclass
class GatedModel:
    """Doubles ``x``; the first call waits for ``release`` so that later requests queue.

    Rows with ``x < 0`` make the whole call fail, like a model choking on one bad row.
    """

    gate_first: bool = True
    calls: list[tuple[Hashable, int]] = field(default_factory=list)
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    threads: set[str] = field(default_factory=set)

    def __call__(self, key: Hashable, columns: dict[str, np.ndarray], rows: int) -> Any:
        first = not self.calls
        self.calls.append((key, rows))
        self.threads.add(threading.current_thread().name)
        if first and self.gate_first:
            self.entered.set()
            assert self.release.wait(10), "the test never released the first call"
        if (columns["x"] < 0).any():
            raise ArithmeticError(f"negative x in a call of {rows} rows")
        return {"y": columns["x"] * 2, "n": np.full(rows, rows)}


def column(*values: float) -> dict[str, np.ndarray]:
    return {"x": np.array(values, dtype=float)}


async def queue_behind_first(
    batcher: MicroBatcher,
    model: GatedModel,
    first: Callable[[], Awaitable[dict[str, np.ndarray]]],
    later: list[Callable[[], Awaitable[dict[str, np.ndarray]]]],
) -> list[Any]:
    """Start ``first``, wait until it predicts, queue ``later``, release; every outcome."""
    head = asyncio.ensure_future(first())
    assert await asyncio.to_thread(model.entered.wait, 10)
    tail = [asyncio.ensure_future(call()) for call in later]
    for _ in range(5):  # let every queued request reach its lane
        await asyncio.sleep(0)
    model.release.set()
    return await asyncio.gather(head, *tail, return_exceptions=True)


def test_a_lone_request_is_predicted_at_once_and_alone() -> None:
    model = GatedModel(gate_first=False)
    batcher = MicroBatcher(model)

    async def main() -> dict[str, np.ndarray]:
        return await batcher.submit(("m", 1), column(1.0, 2.0), 2)

    try:
        out = asyncio.run(main())
    finally:
        batcher.close()
    assert out["y"].tolist() == [2.0, 4.0]
    assert model.calls == [(("m", 1), 2)]
    assert all(name.startswith("conveyor-predict") for name in model.threads)
    assert (batcher.stats.batches, batcher.stats.requests, batcher.stats.rows) == (1, 1, 2)


def test_requests_queued_behind_a_batch_form_the_next_one_and_get_their_own_rows() -> None:
    model = GatedModel()
    batcher = MicroBatcher(model)
    key = ("m", 1)

    def submit(*values: float) -> Callable[[], Awaitable[dict[str, np.ndarray]]]:
        return lambda: batcher.submit(key, column(*values), len(values))

    later = [submit(10.0), submit(20.0, 21.0), submit(30.0)]
    try:
        outs = asyncio.run(queue_behind_first(batcher, model, submit(1.0), later))
    finally:
        batcher.close()
    assert model.calls == [(key, 1), (key, 4)]  # the first alone, then the three together
    assert [o["y"].tolist() for o in outs] == [[2.0], [20.0], [40.0, 42.0], [60.0]]
    assert [o["n"].tolist() for o in outs] == [[1], [4], [4, 4], [4]]
    assert batcher.stats.largest == 3


def test_batches_stay_within_max_rows_and_a_bigger_request_goes_alone() -> None:
    model = GatedModel()
    batcher = MicroBatcher(model, max_batch_rows=5)
    key = ("m", 1)

    def submit(rows: int) -> Callable[[], Awaitable[dict[str, np.ndarray]]]:
        values = [float(rows)] * rows
        return lambda: batcher.submit(key, column(*values), rows)

    later = [submit(2), submit(2), submit(2), submit(9), submit(1)]
    try:
        outs = asyncio.run(queue_behind_first(batcher, model, submit(1), later))
    finally:
        batcher.close()
    assert [rows for _, rows in model.calls] == [1, 4, 2, 9, 1]
    assert [len(o["y"]) for o in outs] == [1, 2, 2, 2, 9, 1]


def test_different_keys_or_column_layouts_are_never_mixed() -> None:
    model = GatedModel()
    batcher = MicroBatcher(model)

    def submit(key: Hashable, values: np.ndarray) -> Callable[[], Awaitable[Any]]:
        return lambda: batcher.submit(key, {"x": values}, len(values))

    floats, ints = np.array([1.0]), np.array([1])
    later = [
        submit(("m", 1), floats),
        submit(("m", 2), floats),
        submit(("m", 1), ints),
        submit(("m", 1), floats),
    ]
    try:
        asyncio.run(queue_behind_first(batcher, model, submit(("m", 1), floats), later))
    finally:
        batcher.close()
    calls = sorted(model.calls[1:], key=str)
    assert model.calls[0] == (("m", 1), 1)
    assert calls == [(("m", 1), 1), (("m", 1), 2), (("m", 2), 1)]


def test_a_request_that_breaks_the_model_fails_alone() -> None:
    model = GatedModel()
    batcher = MicroBatcher(model)
    key = ("m", 1)

    def submit(value: float) -> Callable[[], Awaitable[dict[str, np.ndarray]]]:
        return lambda: batcher.submit(key, column(value), 1)

    try:
        outs = asyncio.run(
            queue_behind_first(
                batcher, model, submit(1.0), [submit(2.0), submit(-1.0), submit(3.0)]
            )
        )
    finally:
        batcher.close()
    assert [o["y"].tolist() for o in (outs[0], outs[1], outs[3])] == [[2.0], [4.0], [6.0]]
    assert isinstance(outs[2], ArithmeticError)
    with pytest.raises(ArithmeticError, match="negative x in a call of 1 rows"):
        raise outs[2]
    assert batcher.stats.retried == 3


def test_a_request_refused_by_the_check_fails_alone_and_the_rest_is_batched() -> None:
    model = GatedModel()

    def check(key: Hashable, columns: Any, rows: int) -> dict[str, np.ndarray]:
        if (columns["x"] > 99).any():
            raise ValueError(f"x must be <= 99, got {columns['x'].max()}")
        return {"x": columns["x"].reshape(-1)}  # [rows, 1] -> [rows]

    batcher = MicroBatcher(model, check=check)
    key = ("m", 1)

    def submit(value: float) -> Callable[[], Awaitable[dict[str, np.ndarray]]]:
        return lambda: batcher.submit(key, {"x": np.array([[value]])}, 1)

    later = [submit(2.0), submit(100.0), submit(3.0)]
    try:
        outs = asyncio.run(queue_behind_first(batcher, model, submit(1.0), later))
    finally:
        batcher.close()
    assert model.calls == [(key, 1), (key, 2)]
    assert [o["y"].tolist() for o in (outs[0], outs[1], outs[3])] == [[2.0], [4.0], [6.0]]
    with pytest.raises(ValueError, match=r"x must be <= 99, got 100.0"):
        raise outs[2]
    assert (batcher.stats.requests, batcher.stats.retried) == (3, 0)


def test_an_output_without_one_entry_per_row_is_a_bundle_error() -> None:
    batcher = MicroBatcher(lambda key, cols, rows: {"y": np.zeros(rows + 1)})

    async def main() -> None:
        await batcher.submit("k", column(1.0, 2.0), 2)

    try:
        with pytest.raises(BundleError, match=r"output 'y' with shape \[3\] for 2 input rows"):
            asyncio.run(main())
    finally:
        batcher.close()


def test_a_cancelled_queued_request_is_skipped() -> None:
    model = GatedModel()
    batcher = MicroBatcher(model)
    key = ("m", 1)

    async def main() -> list[Any]:
        head = asyncio.ensure_future(batcher.submit(key, column(1.0), 1))
        assert await asyncio.to_thread(model.entered.wait, 10)
        gone = asyncio.ensure_future(batcher.submit(key, column(5.0, 6.0), 2))
        kept = asyncio.ensure_future(batcher.submit(key, column(7.0), 1))
        await asyncio.sleep(0)
        gone.cancel()
        model.release.set()
        return await asyncio.gather(head, kept)

    try:
        _, kept = asyncio.run(main())
    finally:
        batcher.close()
    assert kept["y"].tolist() == [14.0]
    assert model.calls == [(key, 1), (key, 1)]


def test_submitting_after_close_fails_instead_of_hanging() -> None:
    batcher = MicroBatcher(GatedModel(gate_first=False))
    batcher.close()

    async def main() -> None:
        await asyncio.wait_for(batcher.submit("k", column(1.0), 1), 5)

    with pytest.raises(RuntimeError, match="shut down"):
        asyncio.run(main())


def test_requests_the_loop_has_in_hand_share_the_first_batch() -> None:
    model = GatedModel(gate_first=False)
    batcher = MicroBatcher(model)

    async def main() -> list[dict[str, np.ndarray]]:
        calls = [batcher.submit("k", column(float(i)), 1) for i in range(3)]
        return await asyncio.gather(*calls)

    try:
        outs = asyncio.run(main())
    finally:
        batcher.close()
    assert model.calls == [("k", 3)]
    assert [o["y"].tolist() for o in outs] == [[0.0], [2.0], [4.0]]


def test_cheap_batches_move_to_the_event_loop_and_costly_ones_stay_on_threads() -> None:
    model = GatedModel(gate_first=False)
    cheap = MicroBatcher(model, inline_below_s=10.0)
    never = MicroBatcher(model, inline_below_s=0.0)
    refused = MicroBatcher(model, inline_below_s=10.0, inline_ok=lambda key: key != "k")

    async def main() -> None:
        for batcher in (cheap, never, refused):
            for value in (1.0, 2.0, 3.0):
                await batcher.submit("k", column(value), 1)

    try:
        asyncio.run(main())
    finally:
        for batcher in (cheap, never, refused):
            batcher.close()
    assert (cheap.stats.batches, cheap.stats.inline) == (3, 2)  # the first one measures
    assert (never.stats.inline, refused.stats.inline) == (0, 0)
    assert "MainThread" in model.threads
    cost = cheap.cost("k")
    assert cost is not None and 0 < cost < 10.0
    assert cheap.cost("unknown") is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_batch_rows": 0}, "max_batch_rows must be >= 1, got 0"),
        ({"threads": 0}, "threads must be >= 1, got 0"),
        ({"inline_below_s": -1.0}, "inline_below_s must be >= 0, got -1.0"),
    ],
)
def test_bad_settings_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MicroBatcher(GatedModel(), **options)


def test_a_request_without_rows_is_refused() -> None:
    batcher = MicroBatcher(GatedModel(gate_first=False))
    try:
        with pytest.raises(ValueError, match="at least one row, got 0"):
            asyncio.run(batcher.submit("k", column(), 0))
    finally:
        batcher.close()
