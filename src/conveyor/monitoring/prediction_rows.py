"""Reading the prediction log (and its feedback) as one row per prediction, with DuckDB.

The log stores one record per *request*: ``inputs`` and ``outputs`` are JSON text holding one
list per column (``{"age": [39, 50], "sex": ["Male", "Female"]}``; a ``[rows, 1]`` column
holds one-element lists). Monitoring needs one row per *prediction*, so the query below
unnests every request into its rows inside DuckDB (JSON parsed once per request, lists indexed
per row), types each input as the model's signature says, and joins the latest ground truth
by request id. Nothing is parsed row by row in Python.

Ground truth: a request's label is a scalar (one-row requests) or a list with one label per
row; any other shape leaves the request's rows unlabelled. Only feedback received at or
before ``now`` counts; of several, the latest (by feedback time) wins.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pandas as pd

from conveyor.monitoring.errors import MonitoringError
from conveyor.monitoring.windows import SeriesKey
from conveyor.serving.feedback import FeedbackStore
from conveyor.serving.prediction_log import as_utc, sql_literal

if TYPE_CHECKING:
    import duckdb

__all__ = ["InputColumn", "InputType", "LogReader", "input_column"]

InputType = Literal["number", "bool", "text"]

# Rows of one request: the length of its label (classification) or prediction (regression)
# list, over ``outs = json_transform(outputs, _OUTPUTS)``. The same expression counts rows
# for window offsets and unnests them.
_ROWS_SQL = "CAST(greatest(coalesce(len(outs.label), len(outs.prediction), 1), 1) AS BIGINT)"
_KIND_SQL = "CASE WHEN ends_with(coalesce(route, ''), ':shadow') THEN 'shadow' ELSE 'served' END"
_SCALAR_MACRO = (
    "CREATE OR REPLACE TEMP MACRO cv_scalar(e) AS CASE WHEN json_type(e) = 'ARRAY' "
    "THEN json_extract_string(e, '$[0]') ELSE json_extract_string(e, '$') END"
)
_GUESS_SQL = """
WITH s AS (SELECT inputs FROM predictions{where} LIMIT 1000),
k AS (SELECT unnest(json_keys(inputs)) AS name, inputs FROM s),
t AS (SELECT name, '$."' || replace(name, '"', '\\"') || '"[0]' AS path, inputs FROM k)
SELECT name, bool_and(coalesce(coalesce(
         json_type(json_extract(inputs, path || '[0]')), json_type(json_extract(inputs, path))
       ) IN ('UBIGINT', 'BIGINT', 'DOUBLE'), true)) AS number
FROM t GROUP BY name ORDER BY name
"""
_OUTPUTS = '{"label": "JSON[]", "probabilities": "JSON[]", "prediction": "JSON[]"}'
_CASTS: dict[InputType, str] = {"number": "DOUBLE", "bool": "BOOLEAN", "text": "VARCHAR"}


@dataclass(frozen=True)
class InputColumn:
    """One serving input to extract, and how to type it."""

    name: str
    type: InputType

    @property
    def column(self) -> str:
        """Its column in the row frame: ``in:NAME``."""
        return f"in:{self.name}"


def input_column(name: str, signature_type: str) -> InputColumn:
    """The column for a signature input (``int``/``float`` are numbers, ``bool`` booleans,
    anything else text)."""
    kind: InputType = (
        "number"
        if signature_type in ("int", "float")
        else "bool"
        if signature_type == "bool"
        else "text"
    )
    return InputColumn(name, kind)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class LogReader:
    """Queries over the prediction log of one artifact store.

    Args:
        root: The serving folder (``<artifact_url>``) holding ``feedback/``.
        predictions: The prediction log's root (default ``<root>/predictions``).
    """

    def __init__(self, root: str, predictions: str | None = None) -> None:
        self.store = FeedbackStore(root, predictions=predictions, durable=False)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        import duckdb

        try:
            con = self.store.connect()
            con.execute(_SCALAR_MACRO)
        except duckdb.Error as exc:
            raise MonitoringError(
                f"cannot read the prediction log {self.store.predictions_root.url}: {exc}"
            ) from exc
        return con

    def _query(self, sql: str, params: Sequence[object]) -> pd.DataFrame:
        import duckdb

        con = self._connect()
        try:
            frame: pd.DataFrame = con.execute(sql, list(params)).df()
        except duckdb.Error as exc:
            raise MonitoringError(
                f"cannot read the prediction log {self.store.predictions_root.url}: {exc}"
            ) from exc
        finally:
            con.close()
        return frame

    def versions(self, model: str, since: dt.datetime | None, now: dt.datetime) -> list[str]:
        """The versions (as logged, ``""`` when missing) with predictions in the span."""
        where, params = _where(model, since, now)
        frame = self._query(
            f"SELECT DISTINCT coalesce(version, '') AS version FROM predictions{where} ORDER BY 1",
            params,
        )
        return [str(v) for v in frame["version"]]

    def rows_before(
        self, model: str, before: dt.datetime, since: dt.datetime | None = None
    ) -> dict[SeriesKey, int]:
        """Rows each series logged before ``before`` (from ``since``, when given): the
        numbering of count windows."""
        where, params = _where(model, since, before)
        frame = self._query(
            f"SELECT version, route_kind, sum({_ROWS_SQL})::BIGINT AS n FROM ("
            f"SELECT coalesce(version, '') AS version, {_KIND_SQL} AS route_kind, "
            f"json_transform(outputs, {sql_literal(_OUTPUTS)}) AS outs "
            f"FROM predictions{where}) GROUP BY ALL",
            params,
        )
        return {
            (str(v), k): int(n)
            for v, k, n in zip(frame["version"], frame["route_kind"], frame["n"], strict=True)
        }

    def rows(
        self,
        model: str,
        inputs: Sequence[InputColumn],
        *,
        since: dt.datetime | None,
        now: dt.datetime,
        classes: int = 0,
        series: SeriesKey | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """One row per prediction of ``model`` with ``since <= time < now``.

        Columns: ``version`` (text, ``""`` when missing), ``route``, ``route_kind``, ``time``,
        ``request_id``, ``row`` (position in its request), ``latency_ms``, one ``in:NAME``
        column per input, ``out:label`` (text), ``out:p0`` ... ``out:p{classes-1}`` (the
        class probabilities), ``out:value`` (regression prediction), ``label`` (the ground
        truth as text, null when none arrived by ``now``) and ``feedback_time``. Sorted by
        series, then log order. ``series`` keeps one (version, route kind); ``limit``
        keeps the first rows.
        """
        where, params = _where(model, since, now, series)
        sql = _rows_sql(inputs, where, classes)
        if limit is not None:
            sql += f"LIMIT {int(limit)}\n"
        return self._query(sql, [*params, as_utc(now)])

    def first_time(self, model: str, series: SeriesKey, now: dt.datetime) -> dt.datetime | None:
        """When ``series`` logged its first prediction (None: never before ``now``)."""
        where, params = _where(model, None, now, series)
        frame = self._query(f"SELECT min(time) AS first FROM predictions{where}", params)
        first = frame["first"].iloc[0] if len(frame) else None
        return None if first is None or pd.isna(first) else as_utc(first.to_pydatetime())

    def input_columns(
        self, model: str, since: dt.datetime | None, now: dt.datetime
    ) -> list[InputColumn]:
        """Inputs guessed from the log itself (for versions without a readable signature):
        every key seen in a sample of requests, a number when every first value is one."""
        where, params = _where(model, since, now)
        frame = self._query(_GUESS_SQL.format(where=where), params)
        return [
            InputColumn(str(n), "number" if bool(x) else "text")
            for n, x in zip(frame["name"], frame["number"], strict=True)
        ]


def _where(
    model: str,
    since: dt.datetime | None,
    until: dt.datetime | None,
    series: SeriesKey | None = None,
) -> tuple[str, list[object]]:
    clauses: list[str] = ["model = ?"]
    params: list[object] = [model]
    if series is not None:
        clauses.append(f"coalesce(version, '') = ? AND {_KIND_SQL} = ?")
        params += [series[0], series[1]]
    if since is not None:
        start = as_utc(since)
        clauses.append(f"date >= DATE {sql_literal(start.date().isoformat())}")
        clauses.append("time >= ?")
        params.append(start)
    if until is not None:
        end = as_utc(until)
        clauses.append(f"date <= DATE {sql_literal(end.date().isoformat())}")
        clauses.append("time < ?")
        params.append(end)
    return " WHERE " + " AND ".join(clauses), params


def _rows_sql(inputs: Sequence[InputColumn], where: str, classes: int) -> str:
    # json_transform parses each document once and yields NULL for a missing key or a
    # value of another shape, where json_extract + CAST would parse once per key.
    shape = json.dumps({c.name: "JSON[]" for c in inputs})
    extract = f"json_transform(inputs, {sql_literal(shape)})" if inputs else "NULL"
    lists = "".join(
        f", struct_extract(ins, {sql_literal(c.name)}) AS l{i}" for i, c in enumerate(inputs)
    )
    typed = "".join(
        f", TRY_CAST(cv_scalar(l{i}[row + 1]) AS {_CASTS[c.type]}) AS {_quote(c.column)}"
        for i, c in enumerate(inputs)
    )
    probas = "".join(f', pv[{i + 1}] AS "out:p{i}"' for i in range(classes))
    return f"""
WITH p AS (
  SELECT request_id, coalesce(version, '') AS version, coalesce(route, '') AS route,
         {_KIND_SQL} AS route_kind, time, latency_ms,
         {extract} AS ins, json_transform(outputs, {sql_literal(_OUTPUTS)}) AS outs
  FROM predictions{where}
), fb AS (
  SELECT request_id, label, time AS feedback_time FROM feedback WHERE time <= ?
  QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY time DESC, label DESC) = 1
), q AS (
  SELECT p.* EXCLUDE (ins, outs), {_ROWS_SQL} AS n{lists}, outs.label AS labels,
         outs.probabilities AS probas, outs.prediction AS preds, fb.label AS truth,
         TRY_CAST(fb.label AS JSON[]) AS truths, fb.feedback_time
  FROM p LEFT JOIN fb ON fb.request_id = p.request_id
), r AS (
  SELECT q.*, unnest(range(n)) AS row FROM q
), s AS (
  SELECT r.*, TRY_CAST(probas[row + 1] AS DOUBLE[]) AS pv FROM r
)
SELECT version, route, route_kind, time, request_id, row, latency_ms{typed},
       cv_scalar(labels[row + 1]) AS "out:label"{probas},
       TRY_CAST(cv_scalar(preds[row + 1]) AS DOUBLE) AS "out:value",
       CASE WHEN truths IS NOT NULL THEN
              CASE WHEN len(truths) = n THEN cv_scalar(truths[row + 1]) END
            WHEN n = 1 THEN cv_scalar(truth) END AS label,
       feedback_time
FROM s
ORDER BY version, route_kind, time, request_id, row
"""
