"""The access log's line format and its batched stderr writer."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest

from conveyor.serving import access_log
from conveyor.serving.access_log import ACCESS_LOGGER, AccessLine, BatchedLineWriter

LINE = AccessLine("POST", "/v1/models/m:predict", 200, 0.0012345, "r-1", "m", "3", "prod", "v1")


def test_a_line_is_compact_json_with_latency_in_milliseconds() -> None:
    assert json.loads(LINE.to_json()) == {
        "method": "POST",
        "path": "/v1/models/m:predict",
        "status": 200,
        "latency_ms": 1.234,
        "request_id": "r-1",
        "model": "m",
        "version": "3",
        "route": "prod",
        "protocol": "v1",
    }
    assert " " not in LINE.to_json()


def test_the_json_fallback_writes_the_same_line(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = LINE.to_json()
    monkeypatch.setattr(access_log, "_orjson", None)
    assert json.loads(LINE.to_json()) == json.loads(fast)


def _wait_for(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_writer_writes_batches_in_order_from_its_thread() -> None:
    sink = io.StringIO()
    writer = BatchedLineWriter(lambda: sink, interval_s=0.01)
    try:
        lines = [LINE._replace(request_id=f"r-{i}") for i in range(100)]
        for line in lines:
            writer.add(line)
        _wait_for(lambda: sink.getvalue().count("\n") == 100)
        written = [json.loads(text)["request_id"] for text in sink.getvalue().splitlines()]
        assert written == [f"r-{i}" for i in range(100)]
    finally:
        writer.close()


def test_close_writes_what_is_left_and_stops_the_thread() -> None:
    sink = io.StringIO()
    writer = BatchedLineWriter(lambda: sink, interval_s=3600)
    writer.add(LINE)
    assert sink.getvalue() == ""  # nothing written before the interval
    writer.close()
    assert json.loads(sink.getvalue())["request_id"] == "r-1"
    assert not writer._thread.is_alive()
    writer.close()  # idempotent


def test_a_closed_stream_loses_lines_but_never_raises() -> None:
    sink = io.StringIO()
    sink.close()
    writer = BatchedLineWriter(lambda: sink, interval_s=3600)
    writer.add(LINE)
    writer.flush()
    writer.close()


def test_the_stream_is_looked_up_at_each_write() -> None:
    sinks = [io.StringIO(), io.StringIO()]
    current = [sinks[0]]
    writer = BatchedLineWriter(lambda: current[0], interval_s=3600)
    writer.add(LINE)
    writer.flush()
    current[0] = sinks[1]
    writer.add(LINE._replace(status=404))
    writer.close()
    assert json.loads(sinks[0].getvalue())["status"] == 200
    assert json.loads(sinks[1].getvalue())["status"] == 404


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        BatchedLineWriter(interval_s=0)


def test_without_the_stderr_writer_lines_go_to_the_logger(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(access_log, "_writer", None)
    assert not access_log.enabled()  # the logger is off by default: lines are not even built
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    assert access_log.enabled()
    access_log.emit(LINE)
    [record] = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    assert json.loads(record.getMessage())["path"] == "/v1/models/m:predict"


def test_with_the_stderr_writer_lines_skip_the_logger(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = io.StringIO()
    writer = BatchedLineWriter(lambda: sink, interval_s=3600)
    monkeypatch.setattr(access_log, "_writer", writer)
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    assert access_log.enabled()
    access_log.emit(LINE)
    access_log.flush()
    writer.close()
    assert json.loads(sink.getvalue())["request_id"] == "r-1"
    assert not [r for r in caplog.records if r.name == ACCESS_LOGGER]
