"""Ground truth that arrives after the prediction, by request id, and its join with the log.

Layout (``root`` is the serving folder of the artifact store, e.g. ``<artifact_url>``)::

    <root>/feedback/date=YYYY-MM-DD/part-<utc timestamp>-<pid>-<seq>.parquet
    <root>/predictions/...          the PredictionLog (or wherever ``predictions=`` points)

Every :meth:`FeedbackStore.add` / :meth:`FeedbackStore.add_many` call writes one new Parquet
file, synchronously and atomically (temporary name, fsync, rename), so when it returns the
feedback is durable; batch with ``add_many`` when labels come in bulk. Files are never
modified. A request id may get feedback several times: the latest (by feedback ``time``,
then by write order) wins in the join.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from conveyor.serving.prediction_log import (
    PREDICTION_PARTITIONS,
    PREDICTION_SCHEMA,
    StoreRoot,
    _utcnow,
    _where,
    as_utc,
    create_parquet_view,
    new_connection,
    prediction_log_url,
    to_json,
)

if TYPE_CHECKING:
    import duckdb

__all__ = ["FEEDBACK_SCHEMA", "Feedback", "FeedbackStore"]

FEEDBACK_SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
"""The columns of every feedback file; ``label`` is JSON text (``date`` comes from the path)."""

_FEEDBACK_DIR = "feedback"


@dataclass(slots=True)
class Feedback:
    """Ground truth for one request: any JSON-able ``label``, received at ``time`` (UTC)."""

    request_id: str
    label: Any
    time: dt.datetime = field(default_factory=_utcnow)


FeedbackLike = Feedback | Mapping[str, Any] | tuple[Any, ...]


def _as_feedback(item: FeedbackLike) -> Feedback:
    if isinstance(item, Feedback):
        fb = item
    elif isinstance(item, Mapping):
        if "request_id" not in item or "label" not in item:
            raise ValueError("feedback needs 'request_id' and 'label'")
        fb = Feedback(item["request_id"], item["label"], item.get("time") or _utcnow())
    elif isinstance(item, tuple) and len(item) in (2, 3):
        fb = Feedback(item[0], item[1], (item[2] if len(item) == 3 else None) or _utcnow())
    else:
        raise TypeError(f"not a feedback item: {item!r}")
    if not isinstance(fb.request_id, str) or not fb.request_id:
        raise ValueError(f"request_id must be a non-empty string, got {fb.request_id!r}")
    when: Any = fb.time or _utcnow()
    if isinstance(when, str):
        when = dt.datetime.fromisoformat(when)
    return Feedback(fb.request_id, fb.label, as_utc(when))


class FeedbackStore:
    """Append-only store of ground truth under ``<root>/feedback``, joined with predictions.

    Args:
        root: the serving folder (local path or fsspec URL) holding ``feedback/``.
        predictions: the prediction log's root; defaults to ``<root>/predictions``.
        durable: fsync each file and its folder (local roots).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        predictions: str | os.PathLike[str] | None = None,
        durable: bool = True,
    ) -> None:
        base = os.fspath(root).rstrip("/")
        self.root = StoreRoot(base)
        self.feedback_root = StoreRoot(f"{base}/{_FEEDBACK_DIR}")
        self.predictions_root = StoreRoot(
            os.fspath(predictions) if predictions is not None else prediction_log_url(base)
        )
        self.durable = durable

    def __repr__(self) -> str:
        return f"FeedbackStore({self.root.url!r}, predictions={self.predictions_root.url!r})"

    # -- writing --

    def add(self, request_id: str, label: Any, time: dt.datetime | None = None) -> None:
        """Record ``label`` as the ground truth of ``request_id`` (``time`` defaults to now)."""
        self.add_many([Feedback(request_id, label, time or _utcnow())])

    def add_many(self, items: Iterable[FeedbackLike]) -> int:
        """Record many labels at once: :class:`Feedback`, ``{"request_id", "label"[, "time"]}``
        dicts or ``(request_id, label[, time])`` tuples. All are validated before anything is
        written. Returns how many were stored."""
        feedback = [_as_feedback(item) for item in items]
        by_day: dict[str, list[Feedback]] = {}
        for fb in feedback:
            by_day.setdefault(fb.time.strftime("%Y-%m-%d"), []).append(fb)
        for day, group in sorted(by_day.items()):
            table = pa.Table.from_pydict(
                {
                    "request_id": [fb.request_id for fb in group],
                    "label": [to_json(fb.label) for fb in group],
                    "time": [fb.time for fb in group],
                },
                schema=FEEDBACK_SCHEMA,
            )
            self.feedback_root.write_atomic(f"date={day}", table, durable=self.durable)
        return len(feedback)

    # -- reading --

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with these views (timestamps in UTC):

        - ``predictions``: the prediction log (plus ``date``);
        - ``feedback``: every feedback row (``request_id``, ``label`` JSON text, ``time``,
          ``date``);
        - ``feedback_latest``: one row per request id, the latest feedback
          (``request_id``, ``label``, ``feedback_time``);
        - ``joined``: predictions with their latest feedback (inner join), with
          ``label``, ``feedback_time`` and ``label_delay_s`` (feedback time - prediction
          time, in seconds).
        """
        con = new_connection()
        create_parquet_view(
            con, "predictions", self.predictions_root, PREDICTION_SCHEMA, PREDICTION_PARTITIONS
        )
        create_parquet_view(
            con,
            "_feedback_raw",
            self.feedback_root,
            FEEDBACK_SCHEMA,
            {"date": "DATE"},
            with_file_position=True,
        )
        con.execute(
            "CREATE VIEW feedback AS SELECT * EXCLUDE (filename, file_row_number) "
            "FROM _feedback_raw"
        )
        con.execute(
            "CREATE VIEW feedback_latest AS "
            "SELECT request_id, label, time AS feedback_time FROM _feedback_raw "
            "QUALIFY row_number() OVER (PARTITION BY request_id "
            "ORDER BY time DESC, filename DESC, file_row_number DESC) = 1"
        )
        con.execute(
            "CREATE VIEW joined AS "
            "SELECT p.* EXCLUDE (date), f.label, f.feedback_time, "
            "(epoch_us(f.feedback_time) - epoch_us(p.time)) / 1e6 AS label_delay_s "
            "FROM predictions p JOIN feedback_latest f ON p.request_id = f.request_id"
        )
        return con

    def sql(self, query: str, params: Any = None) -> pa.Table:
        """Run ``query`` against the views of :meth:`connect`; returns an Arrow table."""
        con = self.connect()
        try:
            table = con.sql(query, params=params).to_arrow_table()
        finally:
            con.close()
        assert table is not None
        return table

    def joined(
        self,
        model: str | None = None,
        since: dt.datetime | None = None,
        *,
        how: Literal["inner", "left"] = "inner",
    ) -> pa.Table:
        """Predictions (of ``model``, at or after ``since``) with their latest feedback.

        Columns: the prediction columns, ``label`` (JSON text), ``feedback_time`` and
        ``label_delay_s``. ``how="left"`` keeps predictions without feedback (nulls).
        A request id logged several times (e.g. primary and shadow routes) gives one row
        per logged prediction. Ordered by prediction time.
        """
        if how not in ("inner", "left"):
            raise ValueError("how must be 'inner' or 'left'")
        join = "JOIN" if how == "inner" else "LEFT JOIN"
        query = (
            "SELECT p.* EXCLUDE (date), f.label, f.feedback_time, "
            "(epoch_us(f.feedback_time) - epoch_us(p.time)) / 1e6 AS label_delay_s "
            f"FROM predictions p {join} feedback_latest f ON p.request_id = f.request_id"
            + _where(since=since, until=None, model=model, alias="p")
            + " ORDER BY p.time, p.request_id, p.route"
        )
        return self.sql(query)
