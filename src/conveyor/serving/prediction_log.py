"""The prediction log: every answered prediction, buffered in memory and appended to Parquet.

``PredictionLog.record`` is what the server calls on the response path: it encodes the record
into a flat row of strings and numbers (a few microseconds with orjson) and appends it to an
in-memory buffer under a lock (no I/O) and returns. Encoding here rather than at flush time
keeps the buffer out of the garbage collector's way (a row of atoms is not tracked, while
thousands of records holding dicts and arrays were walked by every full collection) and
keeps the flush thread short: it only builds Arrow columns and writes, so it holds the GIL
away from the event loop for a fraction of a millisecond per flush instead of tens. A
background thread wakes every ``flush_interval_s`` (or as soon as ``max_batch`` records are
waiting) and writes the batch to an append-only store::

    <root>/date=YYYY-MM-DD/model=NAME/part-<utc timestamp>-<pid>-<seq>.parquet

one new file per partition per flush, never modified afterwards. ``NAME`` is the model name
percent-encoded (DuckDB decodes it when reading with ``hive_partitioning``). Each file is
written under a hidden temporary name (``.part-....parquet.tmp``), fsynced and renamed into
place, so a reader globbing ``**/*.parquet`` never sees a partial file; a writer killed
mid-write leaves only a ``.tmp`` file, swept by the next log opened on the same root.

Durability: ``close()`` (and interpreter exit) flushes everything; after ``kill -9`` only the
records of the last flush interval (plus the write in flight) are lost.

Bounded memory: when flushing keeps failing (disk full, store unreachable), the buffer holds
at most ``max_buffer`` records; beyond that the oldest are dropped and counted in
``dropped``, with a warning from the background thread. ``record`` never blocks on I/O.

Reading: :func:`connect` gives a DuckDB connection with a ``predictions`` view over the
files (``read_parquet('<root>/**/*.parquet', hive_partitioning=true)``); :func:`tail` and
:func:`export` are the helpers behind ``conveyor predictions tail|export``.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import io
import itertools
import json
import logging
import os
import re
import threading
import urllib.parse
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from conveyor.serving.json_accel import orjson as _orjson

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "PREDICTIONS_DIR",
    "PREDICTION_SCHEMA",
    "PredictionLog",
    "PredictionRecord",
    "connect",
    "export",
    "prediction_log_url",
    "tail",
]

log = logging.getLogger(__name__)

PREDICTION_SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("version", pa.string()),
        pa.field("route", pa.string()),
        pa.field("protocol", pa.string()),
        pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("latency_ms", pa.float64()),
        pa.field("inputs", pa.string()),
        pa.field("outputs", pa.string()),
    ]
)
"""The columns of every prediction file (``date`` and ``model`` also come from the path)."""

ExportFormat = Literal["parquet", "csv", "jsonl"]

_SEQ = itertools.count()  # per process; next() is atomic under the GIL
_TMP_RE = re.compile(r"^\.part-[0-9TZ]+-(?P<pid>\d+)-\d+\.parquet\.tmp$")


PREDICTIONS_DIR = "predictions"


def prediction_log_url(serving_root: str | os.PathLike[str]) -> str:
    """Where the prediction log lives under a serving root (the artifact URL for
    ``conveyor serve``): ``<root>/predictions``."""
    return f"{os.fspath(serving_root).rstrip('/')}/{PREDICTIONS_DIR}"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(slots=True)
class PredictionRecord:
    """One answered prediction, as the server hands it to :meth:`PredictionLog.record`.

    ``inputs`` and ``outputs`` are JSON-able (one row or a batch); :meth:`PredictionLog.record`
    encodes them at once, so the caller may reuse them afterwards. numpy arrays and scalars
    are accepted (``tolist()``); anything else unknown is stored as ``str()``.
    ``time`` is when the request arrived, in UTC (a naive datetime is taken as UTC).
    """

    request_id: str
    model: str
    version: str
    route: str
    inputs: Any
    outputs: Any
    latency_ms: float
    time: dt.datetime = field(default_factory=_utcnow)
    protocol: str = ""


class _Row(NamedTuple):
    """A record as the buffer holds it: encoded, so the garbage collector does not track it."""

    day: str
    model: str
    request_id: str
    version: str | None
    route: str
    protocol: str
    time: dt.datetime
    latency_ms: float
    inputs: str
    outputs: str


def _encode(rec: PredictionRecord) -> _Row:
    when = as_utc(rec.time)
    return _Row(
        when.date().isoformat(),
        rec.model,
        str(rec.request_id),
        None if rec.version is None else str(rec.version),
        rec.route,
        rec.protocol,
        when,
        float(rec.latency_ms),
        to_json(rec.inputs),
        to_json(rec.outputs),
    )


# -- encoding and writing -------------------------------------------------------------------


def _json_default(obj: Any) -> Any:
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(obj, bytes | bytearray | memoryview):
        return bytes(obj).decode("utf-8", errors="backslashreplace")
    if isinstance(obj, dt.datetime | dt.date):
        return obj.isoformat()
    return str(obj)


def to_json(value: Any) -> str:
    """Compact JSON text for a log column; never raises (falls back to the value's repr).

    With orjson installed (the ``serving`` extra) numpy arrays are encoded natively, about
    3x faster than ``json`` on the flush thread, which shares the GIL with request handling;
    NaN and infinities are then written as ``null`` (valid JSON, which DuckDB reads as NULL).
    """
    if _orjson is not None:
        try:
            options = _orjson.OPT_SERIALIZE_NUMPY | _orjson.OPT_NON_STR_KEYS
            return str(_orjson.dumps(value, default=_json_default, option=options), "utf-8")
        except (TypeError, ValueError):  # e.g. non-contiguous arrays: the plain path below
            pass
    try:
        return json.dumps(value, separators=(",", ":"), default=_json_default)
    except (TypeError, ValueError):  # circular structures, unencodable keys ...
        return json.dumps(repr(value))


def as_utc(value: dt.datetime) -> dt.datetime:
    """``value`` in UTC; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class StoreRoot:
    """A folder of append-only Parquet files: a local path or any fsspec URL.

    Local roots write ``.tmp`` + fsync + ``os.rename`` (atomic). Other filesystems write the
    temporary name and move it (object stores make a single PUT visible atomically anyway).
    """

    def __init__(self, url: str) -> None:
        text = str(url)
        self.fs: Any = None
        if "://" not in text or text.startswith("file://"):
            self.local: Path | None = Path(text.removeprefix("file://")).expanduser().absolute()
            self.path = str(self.local)
            self.url = self.path
        else:
            import fsspec

            self.local = None
            self.fs, self.path = fsspec.core.url_to_fs(text)
            self.path = self.path.rstrip("/")
            self.url = text.rstrip("/")

    def write_atomic(self, rel_dir: str, table: pa.Table, *, durable: bool) -> str:
        """Write ``table`` as a new Parquet file under ``rel_dir``; returns its path."""
        stamp = _utcnow().strftime("%Y%m%dT%H%M%S%fZ")
        name = f"part-{stamp}-{os.getpid()}-{next(_SEQ)}.parquet"
        if self.local is not None:
            folder = self.local / rel_dir
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{name}.tmp"
            final = folder / name
            try:
                with open(tmp, "wb") as handle:
                    pq.write_table(table, handle, compression="zstd")
                    if durable:
                        handle.flush()
                        os.fsync(handle.fileno())
                os.rename(tmp, final)
            except BaseException:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise
            if durable:
                _fsync_dir(folder)
            return str(final)
        folder_path = f"{self.path}/{rel_dir}"
        tmp_path = f"{folder_path}/.{name}.tmp"
        final_path = f"{folder_path}/{name}"
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        self.fs.makedirs(folder_path, exist_ok=True)
        self.fs.pipe_file(tmp_path, buffer.getvalue())
        self.fs.mv(tmp_path, final_path)
        return final_path

    def has_files(self, sub: str = "") -> bool:
        """True when at least one ``*.parquet`` file exists below ``sub``."""
        if self.local is not None:
            base = self.local / sub if sub else self.local
            return base.is_dir() and next(base.rglob("*.parquet"), None) is not None
        base_path = f"{self.path}/{sub}".rstrip("/")
        try:
            return bool(self.fs.glob(f"{base_path}/**/*.parquet"))
        except FileNotFoundError:
            return False

    def glob(self, sub: str = "") -> str:
        """The ``**/*.parquet`` pattern below ``sub`` as DuckDB should read it."""
        if self.local is not None:
            base = str(self.local / sub) if sub else str(self.local)
            return f"{base}/**/*.parquet"
        base_path = f"{self.path}/{sub}".rstrip("/")
        return f"{self.fs.unstrip_protocol(base_path)}/**/*.parquet"

    def register(self, con: duckdb.DuckDBPyConnection) -> None:
        """Let DuckDB read this root (a no-op for local roots)."""
        if self.fs is not None:
            with contextlib.suppress(Exception):  # already registered on this connection
                con.register_filesystem(self.fs)

    def sweep_temp(self) -> int:
        """Remove ``.tmp`` files left by dead writers on a local root; returns how many."""
        if self.local is None or not self.local.is_dir():
            return 0
        removed = 0
        for path in self.local.rglob(".part-*.parquet.tmp"):
            match = _TMP_RE.match(path.name)
            if match is None or _pid_alive(int(match["pid"])):
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
        return removed


def sql_literal(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def create_parquet_view(
    con: duckdb.DuckDBPyConnection,
    name: str,
    root: StoreRoot,
    schema: pa.Schema,
    partitions: Mapping[str, str],
    *,
    sub: str = "",
    with_file_position: bool = False,
) -> None:
    """Create view ``name`` over the Parquet files of ``root`` (or an empty one of ``schema``).

    ``partitions`` maps hive partition names to DuckDB types. ``with_file_position`` adds
    ``filename`` and ``file_row_number`` (write order, for "latest wins" tie breaks).
    """
    if root.has_files(sub):
        root.register(con)
        types = ", ".join(f"{sql_literal(k)}: {v}" for k, v in partitions.items())
        extra = ", filename=true, file_row_number=true" if with_file_position else ""
        con.execute(
            f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet("
            f"{sql_literal(root.glob(sub))}, hive_partitioning=true, union_by_name=true, "
            f"hive_types={{{types}}}{extra})"
        )
        return
    fields = list(schema)
    empty_cols = [
        f"CAST(NULL AS {v}) AS {k}" for k, v in partitions.items() if k not in schema.names
    ]
    if with_file_position:
        empty_cols += [
            "CAST(NULL AS VARCHAR) AS filename",
            "CAST(NULL AS BIGINT) AS file_row_number",
        ]
    empty = pa.schema(fields).empty_table()
    con.register(f"_{name}_empty", empty)
    extra_sql = (", " + ", ".join(empty_cols)) if empty_cols else ""
    con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT *{extra_sql} FROM _{name}_empty")


def new_connection() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that shows timestamps in UTC."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    return con


# -- the log --------------------------------------------------------------------------------


class PredictionLog:
    """Buffered, append-only log of predictions under ``root`` (local folder or fsspec URL).

    Args:
        root: where the files go, e.g. ``<artifact_url>/predictions``.
        flush_interval_s: how often the background thread writes the buffer; a crash loses
            at most about this much.
        max_batch: flush early once this many records are waiting.
        max_buffer: hard cap on buffered records; beyond it the oldest are dropped
            (counted in :attr:`dropped`) instead of blocking or growing without bound.
        durable: fsync each file and its folder before/after the rename (local roots).

    Thread-safe: any number of threads may call :meth:`record`. Use as a context manager
    or call :meth:`close` on shutdown; an ``atexit`` hook closes logs left open.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        flush_interval_s: float = 1.0,
        max_batch: int = 5000,
        max_buffer: int = 100_000,
        durable: bool = True,
    ) -> None:
        if flush_interval_s <= 0:
            raise ValueError("flush_interval_s must be positive")
        if max_batch < 1 or max_buffer < max_batch:
            raise ValueError("need 1 <= max_batch <= max_buffer")
        self.root = StoreRoot(os.fspath(root))
        self.flush_interval_s = flush_interval_s
        self.max_batch = max_batch
        self.max_buffer = max_buffer
        self.durable = durable
        self._buffer: deque[_Row] = deque()
        self._lock = threading.Lock()  # guards _buffer and counters
        self._write_lock = threading.Lock()  # one writer at a time
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._dropped = 0
        self._dropped_reported = 0
        self._written = 0
        self._files = 0
        self._failures = 0
        self.last_error: BaseException | None = None
        self._swept = False

    # -- response path --

    def record(self, rec: PredictionRecord) -> None:
        """Encode and queue one prediction; never does I/O, never raises.

        After :meth:`close` the record is not kept and counts as dropped.
        """
        row = _encode(rec)
        with self._lock:
            if self._closed:  # answered after shutdown: count it, never raise on this path
                self._dropped += 1
                return
            if self._thread is None:
                self._start()
            buffer = self._buffer
            if len(buffer) >= self.max_buffer:
                buffer.popleft()
                self._dropped += 1
            buffer.append(row)
            if len(buffer) == self.max_batch:
                self._wake.set()

    # -- state --

    @property
    def dropped(self) -> int:
        """Records dropped because the buffer was full (flushing failed for too long)."""
        return self._dropped

    @property
    def pending(self) -> int:
        """Records waiting in the buffer."""
        return len(self._buffer)

    @property
    def written(self) -> int:
        """Records written to the store so far by this instance."""
        return self._written

    @property
    def files_written(self) -> int:
        """Parquet files written so far by this instance."""
        return self._files

    # -- flushing --

    def _start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"prediction-log-flush:{self.root.url}", daemon=True
        )
        self._thread.start()
        atexit.register(self.close)

    def _run(self) -> None:
        if not self._swept:
            self._swept = True
            try:
                self.root.sweep_temp()
            except OSError as exc:  # pragma: no cover - best effort
                log.debug("prediction log: temp sweep failed: %s", exc)
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            closing = self._closed
            try:
                self.flush()
            except Exception as exc:
                self._failures += 1
                self.last_error = exc
                log.warning(
                    "prediction log: flush to %s failed (%s pending): %s",
                    self.root.url,
                    self.pending,
                    exc,
                )
            self._report_drops()
            if closing:
                return

    def _report_drops(self) -> None:
        dropped = self._dropped
        if dropped > self._dropped_reported:
            log.warning(
                "prediction log: buffer full (%d records), dropped %d oldest records "
                "(%d in total); is %s writable?",
                self.max_buffer,
                dropped - self._dropped_reported,
                dropped,
                self.root.url,
            )
            self._dropped_reported = dropped

    def flush(self) -> int:
        """Write everything buffered now, in the calling thread; returns records written.

        On failure the unwritten records go back to the front of the buffer (subject to
        ``max_buffer``) and the error is raised.
        """
        with self._write_lock:
            with self._lock:
                if not self._buffer:
                    return 0
                batch = self._buffer
                self._buffer = deque()
            groups: dict[tuple[str, str], list[_Row]] = {}
            for row in batch:
                groups.setdefault((row.day, row.model), []).append(row)
            written = 0
            pending = list(groups.items())
            try:
                while pending:
                    (day, model), records = pending[0]
                    rel = f"date={day}/model={urllib.parse.quote(model, safe='')}"
                    self.root.write_atomic(rel, _records_table(records), durable=self.durable)
                    pending.pop(0)
                    written += len(records)
                    self._files += 1
            except BaseException:
                self._requeue([rec for _, records in pending for rec in records])
                raise
            finally:
                self._written += written
            return written

    def _requeue(self, records: list[_Row]) -> None:
        with self._lock:
            merged = deque(records)
            merged.extend(self._buffer)
            overflow = len(merged) - self.max_buffer
            for _ in range(max(overflow, 0)):
                merged.popleft()
            self._dropped += max(overflow, 0)
            self._buffer = merged

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop the background thread and flush everything left; idempotent.

        Raises the flush error if the last records could not be written.
        """
        with self._lock:
            already = self._closed
            self._closed = True
            thread = self._thread
        if already and thread is None:
            return
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
        if thread is not None:
            self._wake.set()
            thread.join(timeout)
            self._thread = None
        self.flush()
        self._report_drops()

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PredictionLog({self.root.url!r}, pending={self.pending}, dropped={self.dropped})"

    # -- reading (same as the module functions) --

    def tail(self, n: int = 20, model: str | None = None) -> list[dict[str, Any]]:
        """The last ``n`` logged predictions (flushed ones only); see :func:`tail`."""
        return tail(self.root.url, n=n, model=model)

    def export(
        self,
        path: str | os.PathLike[str],
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        model: str | None = None,
        format: ExportFormat = "parquet",
    ) -> int:
        """Export flushed predictions; see :func:`export`."""
        return export(self.root.url, path, since=since, until=until, model=model, format=format)


def _records_table(rows: Sequence[_Row]) -> pa.Table:
    columns = dict(zip(_Row._fields, zip(*rows, strict=True), strict=True))
    return pa.Table.from_pydict(
        {name: list(columns[name]) for name in PREDICTION_SCHEMA.names}, schema=PREDICTION_SCHEMA
    )


# -- query helpers --------------------------------------------------------------------------

PREDICTION_PARTITIONS = {"date": "DATE", "model": "VARCHAR"}


def connect(root: str | os.PathLike[str]) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with a ``predictions`` view over the log at ``root``.

    The view has the columns of :data:`PREDICTION_SCHEMA` plus ``date`` (the partition);
    timestamps are shown in UTC. Files written after this call are picked up by the view
    (the glob is evaluated per query) as long as the log was not empty when connecting.
    """
    con = new_connection()
    create_parquet_view(
        con, "predictions", StoreRoot(os.fspath(root)), PREDICTION_SCHEMA, PREDICTION_PARTITIONS
    )
    return con


def _where(
    *,
    since: dt.datetime | None,
    until: dt.datetime | None,
    model: str | None,
    alias: str = "",
) -> str:
    prefix = f"{alias}." if alias else ""
    clauses: list[str] = []
    if since is not None:
        start = as_utc(since)
        clauses.append(f"{prefix}date >= DATE {sql_literal(start.date().isoformat())}")
        clauses.append(f"{prefix}time >= TIMESTAMPTZ {sql_literal(start.isoformat())}")
    if until is not None:
        end = as_utc(until)
        clauses.append(f"{prefix}date <= DATE {sql_literal(end.date().isoformat())}")
        clauses.append(f"{prefix}time < TIMESTAMPTZ {sql_literal(end.isoformat())}")
    if model is not None:
        clauses.append(f"{prefix}model = {sql_literal(model)}")
    return (" WHERE " + " AND ".join(clauses)) if clauses else ""


def _decode(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value


def tail(
    root: str | os.PathLike[str], n: int = 20, model: str | None = None
) -> list[dict[str, Any]]:
    """The ``n`` most recent predictions (by ``time``), oldest first, as dicts.

    ``inputs`` and ``outputs`` are decoded from JSON; ``time`` is a UTC datetime.
    """
    if n <= 0:
        return []
    con = connect(root)
    try:
        table = con.sql(
            "SELECT * EXCLUDE (date) FROM predictions"
            + _where(since=None, until=None, model=model)
            + f" ORDER BY time DESC, request_id DESC LIMIT {int(n)}"
        ).to_arrow_table()
    finally:
        con.close()
    assert table is not None
    rows = table.to_pylist()
    rows.reverse()
    for row in rows:
        row["inputs"] = _decode(row["inputs"])
        row["outputs"] = _decode(row["outputs"])
    return rows


def export(
    root: str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    model: str | None = None,
    format: ExportFormat = "parquet",
) -> int:
    """Write the predictions with ``since <= time < until`` (and ``model``) to one local file.

    ``format`` is ``parquet``, ``csv`` or ``jsonl`` (one JSON object per line); ``inputs``
    and ``outputs`` stay JSON text in every format. Rows are ordered by time. Returns the
    number of rows written.
    """
    options = {
        "parquet": "FORMAT parquet",
        "csv": "FORMAT csv, HEADER true",
        "jsonl": "FORMAT json",
    }
    if format not in options:
        raise ValueError(f"unknown export format {format!r}; use parquet, csv or jsonl")
    out = Path(os.fspath(path)).expanduser().absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    con = connect(root)
    try:
        query = (
            "SELECT * EXCLUDE (date) FROM predictions"
            + _where(since=since, until=until, model=model)
            + " ORDER BY time, request_id"
        )
        result = con.execute(f"COPY ({query}) TO {sql_literal(str(out))} ({options[format]})")
        row = result.fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0
