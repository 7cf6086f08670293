"""Line numbers for values of a TOML document, which :mod:`tomllib` does not give.

:class:`TomlLines` scans text that ``tomllib`` has already accepted and records the line where
each key path is defined: a table header (``[pipelines.census]`` ->
``("pipelines", "census")``), an array-of-tables entry (the second ``[[alerts]]`` ->
``("alerts", 1)``), a key (``("alerts", 1, "metric")``), dotted keys (``a.b = 1``), inline
tables (``params = { span = 3 }`` -> ``(..., "params", "span")``) and array items, multi-line
ones included (``(..., "alerts", 0)``). Strings, comments and multi-line strings are skipped
properly, so a ``#`` or ``[`` inside a string confuses nothing.

:meth:`TomlLines.line_of` answers the longest recorded prefix of a path, so a key that is
missing is reported at its table's header. The scanner never raises: on text it does not
understand it keeps what it found so far.
"""

from __future__ import annotations

import contextlib
import tomllib

__all__ = ["KeyPath", "TomlLines"]

KeyPath = tuple[str | int, ...]
_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_SCALAR_END = frozenset(",]}\n#")


class TomlLines:
    """Where each key path of a TOML text is defined.

    Example:
        >>> lines = TomlLines('[[alerts]]\\nname = "a"\\n\\n[[alerts]]\\nmetric = "drift"\\n')
        >>> lines.line_of("alerts", 1, "metric"), lines.line_of("alerts", 1, "feature")
        (5, 4)
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0
        self._line = 1
        self._lines: dict[KeyPath, int] = {}
        self._arrays: dict[KeyPath, int] = {}  # array-of-tables path -> entries seen
        # Keep what was found on a surprise: a line number is a courtesy, never a failure.
        with contextlib.suppress(IndexError, ValueError, tomllib.TOMLDecodeError):
            self._document()

    def line_of(self, *path: str | int) -> int | None:
        """The line defining ``path``, else that of its longest defined prefix (None: none)."""
        for end in range(len(path), 0, -1):
            line = self._lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None

    @property
    def paths(self) -> dict[KeyPath, int]:
        """Every recorded path and its line."""
        return dict(self._lines)

    # -- scanning ----------------------------------------------------------------------
    def _peek(self, offset: int = 0) -> str:
        index = self._pos + offset
        return self._text[index] if index < len(self._text) else ""

    def _advance(self, count: int = 1) -> None:
        chunk = self._text[self._pos : self._pos + count]
        self._line += chunk.count("\n")
        self._pos += count

    def _skip_blank(self, newlines: bool) -> None:
        """Skip spaces, tabs, comments and (when ``newlines``) line ends."""
        while self._pos < len(self._text):
            char = self._peek()
            if char in " \t\r" or (newlines and char == "\n"):
                self._advance()
            elif char == "#":
                end = self._text.find("\n", self._pos)
                self._advance((end if end >= 0 else len(self._text)) - self._pos)
            else:
                return

    def _record(self, path: KeyPath, line: int) -> None:
        self._lines.setdefault(path, line)

    def _document(self) -> None:
        table: KeyPath = ()
        while True:
            self._skip_blank(newlines=True)
            if self._pos >= len(self._text):
                return
            if self._peek() == "[":
                table = self._header()
            else:
                line = self._line
                keys = self._key()
                self._skip_blank(newlines=False)
                self._advance()  # "="
                self._skip_blank(newlines=False)
                self._record_keys(table, keys, line)
                self._value(table + keys)

    def _header(self) -> KeyPath:
        line = self._line
        is_array = self._peek(1) == "["
        self._advance(2 if is_array else 1)
        keys = self._key()
        self._skip_blank(newlines=False)
        self._advance(2 if is_array else 1)
        resolved: KeyPath = ()
        for position, key in enumerate(keys, start=1):
            resolved += (key,)
            self._record(resolved, line)
            own_array = is_array and position == len(keys)
            if resolved in self._arrays and not own_array:  # a table inside the last entry
                resolved += (self._arrays[resolved] - 1,)
        if is_array:
            index = self._arrays.get(resolved, 0)
            self._arrays[resolved] = index + 1
            resolved += (index,)
        self._lines[resolved] = line
        return resolved

    def _record_keys(self, base: KeyPath, keys: KeyPath, line: int) -> None:
        for end in range(1, len(keys) + 1):
            self._record(base + keys[:end], line)

    def _key(self) -> KeyPath:
        parts: list[str] = []
        while True:
            self._skip_blank(newlines=False)
            char = self._peek()
            if char in "\"'":
                start = self._pos
                self._string()
                raw = self._text[start : self._pos]
                parts.append(str(tomllib.loads(f"k = {raw}")["k"]))
            else:
                start = self._pos
                while self._peek() and self._peek() in _BARE:
                    self._advance()
                if self._pos == start:
                    raise ValueError("not a key")
                parts.append(self._text[start : self._pos])
            self._skip_blank(newlines=False)
            if self._peek() != ".":
                return tuple(parts)
            self._advance()

    def _value(self, path: KeyPath) -> None:
        char = self._peek()
        if char in "\"'":
            self._string()
        elif char == "[":
            self._array(path)
        elif char == "{":
            self._inline_table(path)
        else:
            while self._peek() and self._peek() not in _SCALAR_END:
                self._advance()

    def _array(self, path: KeyPath) -> None:
        self._advance()  # "["
        index = 0
        while True:
            self._skip_blank(newlines=True)
            if self._peek() in ("]", ""):
                self._advance()
                return
            self._record((*path, index), self._line)
            self._value((*path, index))
            self._skip_blank(newlines=True)
            if self._peek() == ",":
                self._advance()
            index += 1

    def _inline_table(self, path: KeyPath) -> None:
        self._advance()  # "{"
        while True:
            self._skip_blank(newlines=True)
            if self._peek() in ("}", ""):
                self._advance()
                return
            line = self._line
            keys = self._key()
            self._skip_blank(newlines=False)
            self._advance()  # "="
            self._skip_blank(newlines=False)
            self._record_keys(path, keys, line)
            self._value(path + keys)
            self._skip_blank(newlines=True)
            if self._peek() == ",":
                self._advance()

    def _string(self) -> None:
        quote = self._peek()
        if self._text.startswith(quote * 3, self._pos):
            self._advance(3)
            while not self._text.startswith(quote * 3, self._pos):
                if self._pos >= len(self._text):
                    return
                self._advance(2 if quote == '"' and self._peek() == "\\" else 1)
            self._advance(3)
            while self._peek() == quote:  # up to two quotes may end the content
                self._advance()
            return
        self._advance()
        while self._peek() not in (quote, "\n", ""):
            self._advance(2 if quote == '"' and self._peek() == "\\" else 1)
        self._advance()
