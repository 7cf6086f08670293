"""Spans: each arrival of new data is a span; a pipeline reads the latest or the last K.

A source folder is laid out in one of these ways (``layout="auto"`` tells them apart):

============ ======================================= ===================================
layout       what a span is                          number / label
============ ======================================= ===================================
``span``     a ``span=N/`` sub-folder                N / ``span=N``
``date``     a ``date=YYYY-MM-DD/`` or ``YYYY-MM-DD/`` YYYYMMDD / the folder name
             sub-folder
``file``     one file of a folder or glob, in natural its position (1, 2, ...) / the
             order of the names                      file name
``single``   the whole file, glob or folder          1 / the source's name
============ ======================================= ===================================

``auto`` picks ``span`` or ``date`` when the folder's sub-folders are named so, ``file`` for a
glob, and ``single`` otherwise (a folder of ``part-N`` files written by one job is one span;
ask for ``layout="file"`` to make each file a span). Names starting with ``.`` or ``_`` are
ignored. A span's fingerprint is a sha256 over its files' relative names, sizes and bytes, and
is computed only for spans that are read.
"""

from __future__ import annotations

import datetime as dt
import glob as globlib
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeAlias

from conveyor.data.errors import DataSourceError
from conveyor.data.sources import FileFormat, natural_key, resolve_files
from conveyor.exceptions import did_you_mean

__all__ = ["LAYOUTS", "Span", "SpanLayout", "discover_spans", "fingerprint_files", "select_spans"]

SpanLayout: TypeAlias = Literal["auto", "span", "date", "file", "single"]
LAYOUTS: tuple[str, ...] = ("auto", "span", "date", "file", "single")
_SPAN_DIR = re.compile(r"span=(\d+)")
_DATE_DIR = re.compile(r"(?:date=)?(\d{4}-\d{2}-\d{2})")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Span:
    """One arrival of data: its number, label and files.

    Attributes:
        number: ``N`` of ``span=N``, ``YYYYMMDD`` of a date, else the position (from 1).
        label: the folder or file name that identifies the span.
        paths: the span's data files, in natural order.
        root: the folder whose ``key=value/`` sub-folders become columns (None for a file).

    Example:
        >>> span = discover_spans("landing/")[-1]  # doctest: +SKIP
        >>> span.number, span.label, span.fingerprint[:8]  # doctest: +SKIP
        (3, 'span=3', '9f2c41d0')
    """

    number: int
    label: str
    paths: tuple[Path, ...]
    root: Path | None = None

    @cached_property
    def fingerprint(self) -> str:
        """sha256 over the files' relative names, sizes and bytes (computed once, on use)."""
        return fingerprint_files(self.paths, self.root)

    def describe(self) -> dict[str, Any]:
        """JSON-able summary: number, label, fingerprint and file count."""
        return {
            "number": self.number,
            "label": self.label,
            "fingerprint": self.fingerprint,
            "files": len(self.paths),
        }


def fingerprint_files(paths: Sequence[Path], root: Path | None = None) -> str:
    """sha256 over the files' names (relative to ``root``, else base names), sizes and bytes.

    Example:
        >>> fingerprint_files([Path("day-1.csv")])[:12]  # doctest: +SKIP
        '5d41402abc4b'
    """
    digest = hashlib.sha256(b"conveyor-span-v1\0")
    for path in paths:
        name = path.relative_to(root).as_posix() if root else path.name
        digest.update(f"{name}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _sub_folders(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))]


def _detect_layout(text: str, path: Path) -> SpanLayout:
    if globlib.has_magic(text):
        return "file"
    if not path.is_dir():
        return "single"
    names = [p.name for p in _sub_folders(path)]
    if any(_SPAN_DIR.fullmatch(n) for n in names):
        return "span"
    if any(_DATE_DIR.fullmatch(n) for n in names):
        return "date"
    return "single"


def _span_number(folder: Path, layout: SpanLayout) -> int:
    pattern = _SPAN_DIR if layout == "span" else _DATE_DIR
    match = pattern.fullmatch(folder.name)
    if match is None:
        example = "span=N" if layout == "span" else "date=YYYY-MM-DD or YYYY-MM-DD"
        raise DataSourceError(
            f"folder {folder} is not a span folder ({example}); rename it, or prefix it with "
            "'_' to have it ignored"
        )
    if layout == "span":
        return int(match[1])
    try:
        day = dt.date.fromisoformat(match[1])
    except ValueError as exc:
        raise DataSourceError(f"span folder {folder}: {match[1]!r} is not a date") from exc
    return day.year * 10000 + day.month * 100 + day.day


def _folder_spans(root: Path, layout: SpanLayout, file_format: FileFormat | None) -> list[Span]:
    if not root.is_dir():
        raise DataSourceError(f"span layout {layout!r} needs a folder, and {root} is not one")
    spans: dict[int, Span] = {}
    for folder in _sub_folders(root):
        number = _span_number(folder, layout)
        if number in spans:
            other = spans[number].label
            raise DataSourceError(f"folders {other!r} and {folder.name!r} of {root} are one span")
        try:
            files = resolve_files(folder, file_format=file_format)
        except DataSourceError as exc:
            raise DataSourceError(f"span {folder.name!r} of {root}: {exc}") from exc
        spans[number] = Span(number, folder.name, tuple(files), folder)
    if not spans:
        raise DataSourceError(f"{root} holds no span folders ({layout} layout)")
    return [spans[n] for n in sorted(spans)]


def discover_spans(
    source: str | os.PathLike[str],
    *,
    layout: SpanLayout = "auto",
    file_format: FileFormat | None = None,
) -> list[Span]:
    """The spans of a source, oldest first.

    Args:
        source: a folder, a glob or a file.
        layout: "auto", "span", "date", "file" or "single" (see the module's table).
        file_format: read only files of this format; by default every known data suffix.

    Raises:
        DataSourceError: the source does not exist, holds no data files, or a folder does not
            fit the layout.

    Example:
        >>> [s.label for s in discover_spans("landing/")]  # doctest: +SKIP
        ['span=1', 'span=2', 'span=10']
        >>> [s.number for s in discover_spans("logs/*.csv")]  # doctest: +SKIP
        [1, 2]
    """
    if layout not in LAYOUTS:
        raise DataSourceError(f"unknown span layout {layout!r}" + did_you_mean(layout, LAYOUTS))
    text = os.path.expanduser(os.fspath(source))
    path = Path(text)
    chosen = _detect_layout(text, path) if layout == "auto" else layout
    if chosen in ("span", "date"):
        return _folder_spans(path, chosen, file_format)
    files = resolve_files(text, file_format=file_format)
    if chosen == "file":
        return [Span(i, f.name, (f,)) for i, f in enumerate(files, start=1)]
    label = path.name or text
    return [Span(1, label, tuple(files), path if path.is_dir() else None)]


def select_spans(spans: Sequence[Span], window: int = 1) -> list[Span]:
    """The last ``window`` spans (all of them for 0), oldest first.

    Example:
        >>> [s.number for s in select_spans(discover_spans("landing/"), 2)]  # doctest: +SKIP
        [2, 3]
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise DataSourceError(
            f"span window must be 0 (all spans) or a positive count, not {window!r}"
        )
    if not spans:
        raise DataSourceError("there are no spans to select from")
    ordered = sorted(spans, key=lambda s: (s.number, natural_key(s.label)))
    return ordered if window == 0 else ordered[-window:]
