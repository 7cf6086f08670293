"""Deterministic train/eval/test splits by hashing, stable across versions of the data.

A row's split depends on the row alone (or on its key), never on the other rows, so a row keeps
its split when rows are appended, removed or reordered, in every later version of the data:

1. Each value gets a *canonical text*: strings as they are; integers in decimal; floats that are
   whole numbers (and below 2**53) as integers (``3.0`` -> ``"3"``, so a column that an
   appended ``2.5`` widens from int64 to double keeps every earlier row's text), other floats in
   Arrow's shortest round-trip form; booleans ``true``/``false``; dates and times in ISO form;
   nested values as canonical JSON. Nulls have no text.
2. The hashed text is the key's (several key columns are joined with ``\\x1f``) or, without a
   key, the whole row's: ``name\\x1etext\\x1f`` for each non-null cell, columns in name order.
   A null cell adds nothing, so adding a column that is null for old rows moves none of them.
3. ``h`` = the first 8 bytes of sha1(text UTF-8), big-endian; ``u = (h >> 11) / 2**53`` lies in
   [0, 1); the row goes to the first split whose cumulative ratio exceeds ``u``. sha1 is stable
   across versions and machines (unlike DuckDB's ``hash`` or Python's ``hash``), and any SQL
   engine with ``sha1`` can reproduce the assignment.

With ``stratify_by``, rows are ordered by ``h`` within each label value and cut at
``round(n * cumulative ratio)``, so each class has its exact share in every split; an appended
row then moves at most one other row of its class per split boundary (the one at the cut).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from conveyor.data.errors import DataError, SchemaError
from conveyor.exceptions import did_you_mean

__all__ = [
    "DEFAULT_RATIOS",
    "HASH_NAME",
    "assign_splits",
    "canonical_text",
    "hash_texts",
    "key_hashes",
    "normalize_ratios",
    "row_hashes",
    "split_table",
]

HASH_NAME = "sha1-64"
DEFAULT_RATIOS: dict[str, float] = {"train": 0.8, "eval": 0.2}
_TEXT = pa.large_string()
_BATCH = 1 << 16
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_-]+")

Hashes = npt.NDArray[np.uint64]


def normalize_ratios(ratios: Mapping[str, float]) -> dict[str, float]:
    """Check split ratios and drop the zero ones; they must sum to 1.

    Example:
        >>> normalize_ratios({"train": 0.8, "eval": 0.2, "test": 0.0})
        {'train': 0.8, 'eval': 0.2}
    """
    clean = {}
    for name, ratio in ratios.items():
        if not isinstance(name, str) or not _SPLIT_NAME.fullmatch(name):
            raise DataError(f"split name {name!r} must be letters, digits, '_' or '-'")
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not ratio >= 0:
            raise DataError(f"split ratio {name}={ratio!r} must be a number >= 0")
        if ratio > 0:
            clean[name] = float(ratio)
    total = sum(clean.values())
    if not clean or abs(total - 1.0) > 1e-6:
        shown = ", ".join(f"{n}={r}" for n, r in ratios.items())
        raise DataError(f"split ratios must sum to 1, got {total:g} ({shown})")
    return clean


def _float_text(values: pa.Array) -> pa.Array:
    floats = values.cast(pa.float64())
    whole = pc.and_(
        pc.is_finite(floats),
        pc.and_(pc.equal(pc.floor(floats), floats), pc.less(pc.abs(floats), 2.0**53)),
    )
    as_int = pc.if_else(whole, floats, 0.0).cast(pa.int64()).cast(_TEXT)
    return pc.if_else(whole, as_int, floats.cast(_TEXT))


def _json_text(values: pa.Array) -> pa.Array:
    def text(value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, bytes):
            return value.hex()
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)

    return pa.array([text(v) for v in values.to_pylist()], _TEXT)


def canonical_text(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The canonical text of each value (nulls stay null); see the module docstring.

    Example:
        >>> canonical_text(pa.array([3.0, 2.5, None])).to_pylist()
        ['3', '2.5', None]
    """
    values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    kind = values.type
    if pa.types.is_dictionary(kind):
        values = values.dictionary_decode()
        kind = values.type
    if pa.types.is_floating(kind):
        return _float_text(values)
    textual = (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_temporal(kind)
    )
    if textual:
        return values.cast(_TEXT)
    if pa.types.is_null(kind):
        return pa.nulls(len(values), _TEXT)
    return _json_text(values)


def hash_texts(texts: pa.Array) -> Hashes:
    """First 8 bytes of sha1 of each text's UTF-8 bytes, as big-endian uint64 (no nulls).

    Example:
        >>> hex(int(hash_texts(pa.array(["a"]))[0]))
        '0x86f7e437faa5a7fc'
    """
    out = np.empty(len(texts), dtype=np.uint64)
    binary = texts.cast(pa.large_binary())
    for start in range(0, len(binary), _BATCH):
        chunk = binary.slice(start, _BATCH).to_pylist()
        digests = b"".join(hashlib.sha1(v).digest()[:8] for v in chunk)
        out[start : start + len(chunk)] = np.frombuffer(digests, dtype=">u8")
    return out


def _join(pieces: Sequence[pa.Array], separator: str) -> pa.Array:
    # null_handling="skip" drops rows in pyarrow 26 when every piece is null: emit nulls and
    # fill them instead.
    return pc.binary_join_element_wise(*pieces, pa.scalar(separator, _TEXT))


def row_hashes(table: pa.Table) -> Hashes:
    """The hash of each whole row's canonical text (columns by name, null cells left out).

    Example:
        >>> row_hashes(pa.table({"a": [1]})) == row_hashes(pa.table({"a": [1], "b": [None]}))
        array([ True])
    """
    empty = pa.scalar("", _TEXT)
    pieces = []
    for name in sorted(set(table.column_names)):
        text = canonical_text(table.column(name))
        cell = _join([pa.scalar(name, _TEXT), text], "\x1e")
        pieces.append(pc.fill_null(_join([cell, empty], "\x1f"), ""))
    if not pieces:
        return hash_texts(pa.array([""] * table.num_rows, _TEXT))
    return hash_texts(_join([*pieces, empty], "") if len(pieces) > 1 else pieces[0])


def _check_columns(table: pa.Table, names: Sequence[str], role: str) -> None:
    for name in names:
        if name not in table.column_names:
            hint = did_you_mean(name, table.column_names)
            raise SchemaError(f"{role} column {name!r} is not in the data{hint}")


def key_hashes(table: pa.Table, key: str | Sequence[str]) -> Hashes:
    """The hash of each row's key (columns joined with ``\\x1f``); null keys are refused.

    Example:
        >>> key_hashes(pa.table({"id": [7]}), "id") == key_hashes(pa.table({"id": ["7"]}), "id")
        array([ True])
    """
    names = [key] if isinstance(key, str) else list(key)
    _check_columns(table, names, "key")
    texts = [canonical_text(table.column(n)) for n in names]
    joined = texts[0] if len(texts) == 1 else _join(texts, "\x1f")
    nulls = joined.null_count
    if nulls:
        first = int(np.flatnonzero(joined.is_null().to_numpy(zero_copy_only=False))[0]) + 1
        raise SchemaError(
            f"key {', '.join(names)} is null in {nulls} row(s) (first: row {first}); "
            "fill it in, or split without a key (by the whole row)"
        )
    return hash_texts(joined)


def _group_ids(table: pa.Table, column: str) -> npt.NDArray[np.int64]:
    _check_columns(table, [column], "stratify_by")
    text = pc.fill_null(canonical_text(table.column(column)), "\x00null")
    return np.asarray(pc.dictionary_encode(text).indices.to_numpy(), dtype=np.int64)


def _assign(hashes: Hashes, bounds: npt.NDArray[np.float64]) -> npt.NDArray[np.int8]:
    u = (hashes >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return np.searchsorted(bounds[:-1], u, side="right").astype(np.int8)


def _assign_stratified(
    hashes: Hashes, groups: npt.NDArray[np.int64], bounds: npt.NDArray[np.float64]
) -> npt.NDArray[np.int8]:
    n = len(hashes)
    order = np.lexsort((np.arange(n), hashes, groups))
    sorted_groups = groups[order]
    counts = np.bincount(groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(n) - starts[sorted_groups]
    cuts = np.floor(counts[:, None] * bounds[None, :-1] + 0.5)
    result = np.empty(n, dtype=np.int8)
    result[order] = (rank[:, None] >= cuts[sorted_groups]).sum(axis=1)
    return result


def assign_splits(
    table: pa.Table,
    ratios: Mapping[str, float] = DEFAULT_RATIOS,
    *,
    key: str | Sequence[str] | None = None,
    stratify_by: str | None = None,
    hashes: Hashes | None = None,
) -> npt.NDArray[np.int8]:
    """The split index (into ``ratios``' non-zero entries) of each row.

    Args:
        table: the rows.
        ratios: split name -> share, summing to 1.
        key: column(s) identifying a row; None hashes the whole row.
        stratify_by: a label column whose classes keep their share in every split.
        hashes: the rows' hashes if already computed (``key_hashes``/``row_hashes``).

    Example:
        >>> assign_splits(pa.table({"id": range(5)}), {"train": 0.6, "eval": 0.4}, key="id")
        array([1, 0, 1, 0, 0], dtype=int8)
    """
    clean = normalize_ratios(ratios)
    bounds = np.cumsum(list(clean.values()))
    bounds[-1] = 1.0
    if hashes is None:
        hashes = row_hashes(table) if key is None else key_hashes(table, key)
    if stratify_by is None:
        return _assign(hashes, bounds)
    return _assign_stratified(hashes, _group_ids(table, stratify_by), bounds)


def split_table(
    table: pa.Table,
    ratios: Mapping[str, float] = DEFAULT_RATIOS,
    *,
    key: str | Sequence[str] | None = None,
    stratify_by: str | None = None,
    row_order: Literal["hash", "source"] = "hash",
) -> dict[str, pa.Table]:
    """Split a table into named parts; each part's rows sorted by row hash, or in source order.

    Sorting by the whole row's hash makes the parts independent of the order the rows were read
    in (a SQL query without ORDER BY, files listed differently), so the same rows give the same
    bytes.

    Example:
        >>> parts = split_table(pa.table({"id": range(10)}), key="id")
        >>> {name: part.num_rows for name, part in parts.items()}
        {'train': 8, 'eval': 2}
    """
    if row_order not in ("hash", "source"):
        raise DataError(f"row_order must be 'hash' or 'source', not {row_order!r}")
    rows = row_hashes(table) if key is None or row_order == "hash" else None
    hashes = rows if key is None else key_hashes(table, key)
    assignment = assign_splits(table, ratios, stratify_by=stratify_by, hashes=hashes)
    parts = {}
    for index, name in enumerate(normalize_ratios(ratios)):
        taken = np.flatnonzero(assignment == index)
        if rows is not None and row_order == "hash":
            taken = taken[np.argsort(rows[taken], kind="stable")]
        parts[name] = table.take(pa.array(taken, pa.int64()))
    return parts
