"""Deterministic splits: stable hashes, appended rows move nothing, stratification holds."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.data.errors import DataError, SchemaError
from conveyor.data.split import (
    assign_splits,
    canonical_text,
    hash_texts,
    key_hashes,
    normalize_ratios,
    row_hashes,
    split_table,
)

RATIOS = {"train": 0.6, "eval": 0.3, "test": 0.1}

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)
cells = st.one_of(st.none(), st.integers(-(10**6), 10**6), texts)
base_rows = st.lists(
    st.fixed_dictionaries({"id": st.integers(0, 10**9), "x": st.integers(-100, 100), "s": cells}),
    max_size=40,
)
# Appended rows may carry a float in "x" (which widens the column from int64 to double) or
# a new column that older rows do not have.
new_rows = st.lists(
    st.fixed_dictionaries(
        {"id": st.integers(0, 10**9), "x": st.one_of(st.integers(-100, 100), st.floats(-1e3, 1e3))},
        optional={"s": cells, "added": texts},
    ),
    min_size=1,
    max_size=5,
)


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    names = sorted({k for row in rows for k in row}) or ["id"]
    columns = {n: [row.get(n) for row in rows] for n in names}
    # "s" mixes ints and strings: store it as text, as a CSV reader would infer it.
    if "s" in columns:
        columns["s"] = [None if v is None else str(v) for v in columns["s"]]
    return pa.table(columns)


def test_hash_is_sha1_prefix_of_canonical_text() -> None:
    expected = int.from_bytes(hashlib.sha1(b"user-42").digest()[:8], "big")
    assert int(hash_texts(pa.array(["user-42"]))[0]) == expected
    assert key_hashes(pa.table({"id": ["user-42"]}), "id")[0] == expected


def test_canonical_text_makes_equal_numbers_equal() -> None:
    assert canonical_text(pa.array([3, None])).to_pylist() == ["3", None]
    assert canonical_text(pa.array([3.0, -0.0, 2.5, float("nan")])).to_pylist() == [
        "3",
        "0",
        "2.5",
        "nan",
    ]
    assert canonical_text(pa.array([True, False])).to_pylist() == ["true", "false"]
    assert canonical_text(pa.array([{"b": 1, "a": [1]}])).to_pylist() == ['{"a":[1],"b":1}']
    dictionary = pa.array(["x", "y", "x"]).dictionary_encode()
    assert canonical_text(dictionary).to_pylist() == ["x", "y", "x"]


def test_row_hash_ignores_column_order_and_null_cells() -> None:
    one = pa.table({"a": [1, 2], "b": ["x", "y"]})
    other = pa.table({"b": ["x", "y"], "a": [1.0, 2.0], "c": pa.nulls(2)})
    assert (row_hashes(one) == row_hashes(other)).all()
    assert (
        row_hashes(pa.table({"a": [1], "b": [2]}))[0]
        != row_hashes(pa.table({"a": [2], "b": [1]}))[0]
    )


def test_ratios_are_checked() -> None:
    assert normalize_ratios({"train": 0.8, "eval": 0.2, "test": 0}) == {"train": 0.8, "eval": 0.2}
    with pytest.raises(DataError, match=r"must sum to 1, got 1.1"):
        normalize_ratios({"train": 0.8, "eval": 0.2, "test": 0.1})
    with pytest.raises(DataError, match=r"split ratio eval=-0.2 must be a number >= 0"):
        normalize_ratios({"train": 1.2, "eval": -0.2})
    with pytest.raises(DataError, match=r"split name 'a/b'"):
        normalize_ratios({"a/b": 1.0})


def test_key_errors_name_the_column() -> None:
    table = pa.table({"user_id": [1, None, 3]})
    with pytest.raises(SchemaError, match=r"key column 'userid' .*did you mean 'user_id'"):
        key_hashes(table, "userid")
    with pytest.raises(SchemaError, match=r"key user_id is null in 1 row\(s\) \(first: row 2\)"):
        key_hashes(table, "user_id")


def test_split_shares_follow_the_ratios() -> None:
    table = pa.table({"id": np.arange(20_000)})
    parts = split_table(table, RATIOS, key="id")
    assert sum(p.num_rows for p in parts.values()) == 20_000
    for name, ratio in RATIOS.items():
        assert abs(parts[name].num_rows / 20_000 - ratio) < 0.015


def test_split_is_independent_of_row_order() -> None:
    table = pa.table({"id": list(range(200)), "v": [i % 7 for i in range(200)]})
    shuffled = table.take(np.random.default_rng(0).permutation(200))
    for key in ("id", None):
        first = split_table(table, RATIOS, key=key)
        second = split_table(shuffled, RATIOS, key=key)
        assert all(first[n].equals(second[n]) for n in RATIOS)


def test_multi_column_key() -> None:
    table = pa.table({"shop": ["a", "a", "b"], "sku": [1, 2, 1]})
    hashes = key_hashes(table, ["shop", "sku"])
    assert len(set(hashes.tolist())) == 3
    expected = hash_texts(pa.array(["a\x1f1"]))[0]
    assert hashes[0] == expected


@settings(max_examples=60, deadline=None)
@given(rows=base_rows, added=new_rows, use_key=st.booleans())
def test_appended_rows_move_no_other_row(
    rows: list[dict[str, Any]], added: list[dict[str, Any]], use_key: bool
) -> None:
    key = "id" if use_key else None
    before = assign_splits(_table(rows), RATIOS, key=key)
    after = assign_splits(_table(rows + added), RATIOS, key=key)
    assert after[: len(rows)].tolist() == before.tolist()


labelled = st.lists(
    st.tuples(st.integers(0, 10**9), st.sampled_from(["a", "b", "c"])), min_size=1, max_size=60
)


@settings(max_examples=60, deadline=None)
@given(rows=labelled, extra=st.tuples(st.integers(0, 10**9), st.sampled_from(["a", "b", "c"])))
def test_stratified_split_keeps_class_shares_and_moves_at_most_one_row_per_cut(
    rows: list[tuple[int, str]], extra: tuple[int, str]
) -> None:
    def assign(items: list[tuple[int, str]]) -> np.ndarray:
        table = pa.table({"id": [i for i, _ in items], "y": [y for _, y in items]})
        return assign_splits(table, RATIOS, key="id", stratify_by="y")

    before, after = assign(rows), assign([*rows, extra])
    labels = np.array([y for _, y in rows])
    for label in set(labels.tolist()):
        members = before[labels == label]
        n = len(members)
        for index, ratio in enumerate(RATIOS.values()):
            # Cut at round(n * cumulative ratio): each share is within one row of exact.
            assert abs((members == index).sum() - n * ratio) <= 1
    moved = labels[after[: len(rows)] != before]
    assert set(moved.tolist()) <= {extra[1]}
    assert len(moved) <= len(RATIOS) - 1


def test_stratified_split_on_a_missing_label_column_is_refused() -> None:
    with pytest.raises(SchemaError, match=r"stratify_by column 'label'"):
        assign_splits(pa.table({"id": [1]}), key="id", stratify_by="label")


def test_source_row_order_keeps_the_input_order() -> None:
    table = pa.table({"id": list(range(50))})
    parts = split_table(table, {"train": 0.5, "eval": 0.5}, key="id", row_order="source")
    for part in parts.values():
        ids = part.column("id").to_pylist()
        assert ids == sorted(ids)
    with pytest.raises(DataError, match=r"row_order must be 'hash' or 'source'"):
        split_table(table, key="id", row_order="random")  # type: ignore[arg-type]
