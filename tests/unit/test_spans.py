"""Span discovery and selection: span=N, date partitions, one file per span, a single span."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.data.errors import DataSourceError
from conveyor.data.spans import Span, discover_spans, fingerprint_files, select_spans


def _csv(path: Path, rows: str = "1\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("id\n" + rows)
    return path


def test_span_folders_are_numbered_and_ordered_by_number(tmp_path: Path) -> None:
    for n in (10, 2, 1):
        _csv(tmp_path / f"span={n}" / "data.csv")
    _csv(tmp_path / "_staging" / "data.csv")
    spans = discover_spans(tmp_path)
    assert [(s.number, s.label) for s in spans] == [(1, "span=1"), (2, "span=2"), (10, "span=10")]
    assert spans[-1].paths == (tmp_path / "span=10" / "data.csv",)
    assert spans[-1].root == tmp_path / "span=10"


def test_select_latest_window_or_all(tmp_path: Path) -> None:
    for n in (1, 2, 3):
        _csv(tmp_path / f"span={n}" / "data.csv")
    spans = discover_spans(tmp_path)
    assert [s.number for s in select_spans(spans)] == [3]
    assert [s.number for s in select_spans(spans, 2)] == [2, 3]
    assert [s.number for s in select_spans(spans, 0)] == [1, 2, 3]
    assert [s.number for s in select_spans(spans, 9)] == [1, 2, 3]
    with pytest.raises(DataSourceError, match=r"span window must be 0 \(all spans\)"):
        select_spans(spans, -1)


def test_date_partitions_in_both_spellings(tmp_path: Path) -> None:
    _csv(tmp_path / "date=2024-01-31" / "a.csv")
    _csv(tmp_path / "2024-02-01" / "a.csv")
    _csv(tmp_path / "date=2023-12-30" / "a.csv")
    spans = discover_spans(tmp_path)
    assert [s.number for s in spans] == [20231230, 20240131, 20240201]
    assert [s.label for s in spans] == ["date=2023-12-30", "date=2024-01-31", "2024-02-01"]


def test_bad_span_folders_are_named(tmp_path: Path) -> None:
    _csv(tmp_path / "a" / "span=1" / "x.csv")
    _csv(tmp_path / "a" / "latest" / "x.csv")
    with pytest.raises(DataSourceError, match=r"folder .*latest is not a span folder \(span=N\)"):
        discover_spans(tmp_path / "a")
    _csv(tmp_path / "b" / "span=1" / "x.csv")
    _csv(tmp_path / "b" / "span=01" / "x.csv")
    with pytest.raises(DataSourceError, match=r"folders 'span=0?1' and 'span=0?1' .* are one span"):
        discover_spans(tmp_path / "b")
    _csv(tmp_path / "c" / "date=2024-02-30" / "x.csv")
    with pytest.raises(DataSourceError, match=r"'2024-02-30' is not a date"):
        discover_spans(tmp_path / "c")
    (tmp_path / "d" / "span=1").mkdir(parents=True)
    with pytest.raises(DataSourceError, match=r"span 'span=1' of .*d: folder .* no data files"):
        discover_spans(tmp_path / "d")
    with pytest.raises(DataSourceError, match=r"unknown span layout 'spans' \(did you mean 'span'"):
        discover_spans(tmp_path / "d", layout="spans")  # type: ignore[arg-type]


def test_each_file_a_span_by_glob_or_layout(tmp_path: Path) -> None:
    for name in ("day-10.csv", "day-2.csv", "day-1.csv"):
        _csv(tmp_path / name)
    by_glob = discover_spans(str(tmp_path / "day-*.csv"))
    assert [(s.number, s.label) for s in by_glob] == [
        (1, "day-1.csv"),
        (2, "day-2.csv"),
        (3, "day-10.csv"),
    ]
    by_layout = discover_spans(tmp_path, layout="file")
    assert [s.label for s in by_layout] == [s.label for s in by_glob]


def test_plain_folder_or_file_is_one_span(tmp_path: Path) -> None:
    for name in ("part-0.csv", "part-1.csv"):
        _csv(tmp_path / "job" / name)
    (span,) = discover_spans(tmp_path / "job")
    assert (span.number, span.label, len(span.paths)) == (1, "job", 2)
    (single,) = discover_spans(tmp_path / "job" / "part-0.csv")
    assert single.paths == (tmp_path / "job" / "part-0.csv",) and single.root is None


def test_fingerprint_follows_content_not_location(tmp_path: Path) -> None:
    one = _csv(tmp_path / "a" / "span=1" / "data.csv", "1\n2\n")
    _csv(tmp_path / "b" / "span=1" / "data.csv", "1\n2\n")
    first = discover_spans(tmp_path / "a")[0].fingerprint
    assert first == discover_spans(tmp_path / "b")[0].fingerprint
    one.write_text("id\n1\n3\n")
    assert discover_spans(tmp_path / "a")[0].fingerprint != first
    assert fingerprint_files([one]) != fingerprint_files([one], tmp_path)


def test_span_describe_is_json_able(tmp_path: Path) -> None:
    path = _csv(tmp_path / "x.csv")
    span = Span(3, "x.csv", (path,))
    assert span.describe() == {
        "number": 3,
        "label": "x.csv",
        "fingerprint": span.fingerprint,
        "files": 1,
    }
