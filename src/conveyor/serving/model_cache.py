"""Loaded models within a memory budget: load on first use, unload the least recently used.

A server may deploy hundreds of models and versions; not all of them fit in one worker's
memory. :class:`ModelCache` loads a ``(model, version)`` the first time it is asked for,
keeps entries in least-recently-used order, and unloads idle entries, oldest first, when the
sizes of the loaded ones (``size_bytes`` of what the loader returns) exceed the budget::

    cache = ModelCache(loader, budget_bytes=2 << 30)
    with cache.use("census", 3) as model:      # loads on first use, pinned inside the block
        model.predict(frame)

Rules:

- **One load per key.** Concurrent first requests for the same key run the loader once; the
  other callers wait for it. Different keys load in parallel (the loader runs outside the
  cache's lock).
- **A failed load** raises to its caller (and to the callers waiting for it) and leaves no
  trace: the next request tries again.
- **In use is never unloaded.** :meth:`ModelCache.use` pins an entry for the duration of the
  block; eviction skips pinned entries, so the cache may exceed its budget while they are in
  use and shrinks back when they are released.
- **Too big for the budget:** an entry larger than the whole budget still loads, alone (every
  idle entry is unloaded), with a warning.
- :meth:`ModelCache.evict` detaches an entry at once (new requests load it afresh) and
  unloads it after its last use ends; ``wait=True`` blocks until then.

Sizes are known only after loading, so memory briefly exceeds the budget by the size of a
model being loaded.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

__all__ = ["ModelCache", "SizedModel"]

logger = logging.getLogger(__name__)

Key = tuple[str, int]


class SizedModel(Protocol):
    """What a loader returns: anything that knows its size in memory."""

    @property
    def size_bytes(self) -> int:
        """Approximate memory taken by the loaded model, in bytes."""
        ...


M = TypeVar("M", bound=SizedModel)


@dataclass(eq=False)
class _Entry(Generic[M]):
    key: Key
    value: M
    size: int
    in_use: int = 0
    detached: bool = False


@dataclass(eq=False)
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class ModelCache(Generic[M]):
    """Loaded models keyed by ``(model, version)``, within a memory budget.

    Args:
        loader: ``loader(model, version)`` loads one model; the result's ``size_bytes`` (an
            int >= 0) is charged against the budget. It runs outside the cache's lock and
            may raise.
        budget_bytes: The memory budget (> 0).
        on_unload: Called with ``(model, version, value)`` after an entry is unloaded
            (outside the lock; its exceptions are logged, not raised).

    Raises:
        ValueError: ``budget_bytes`` is not positive.
    """

    def __init__(
        self,
        loader: Callable[[str, int], M],
        budget_bytes: int,
        *,
        on_unload: Callable[[str, int, M], None] | None = None,
    ) -> None:
        if budget_bytes <= 0:
            raise ValueError(f"budget_bytes must be > 0, got {budget_bytes}")
        self._loader = loader
        self._budget = int(budget_bytes)
        self._on_unload = on_unload
        self._lock = threading.Lock()
        self._released = threading.Condition(self._lock)
        self._entries: OrderedDict[Key, _Entry[M]] = OrderedDict()  # LRU first
        self._pending: dict[Key, _Pending] = {}
        self._detached: set[_Entry[M]] = set()
        self._used = 0  # bytes of loaded entries, detached ones included

    # -- properties -----------------------------------------------------------------------

    @property
    def budget_bytes(self) -> int:
        """The memory budget in bytes."""
        return self._budget

    @property
    def used_bytes(self) -> int:
        """Bytes of every loaded entry, including detached ones still in use."""
        with self._lock:
            return self._used

    # -- access ---------------------------------------------------------------------------

    def get(self, model: str, version: int) -> M:
        """The loaded model, loading it on first use; marks it most recently used.

        The entry is not pinned: it may be unloaded later when it is idle and least recently
        used. Use :meth:`use` around work that must not race an eviction.

        Raises:
            Exception: Whatever the loader raised (the next call tries again).
        """
        return self._acquire((model, version), pin=False).value

    @contextlib.contextmanager
    def use(self, model: str, version: int) -> Iterator[M]:
        """Pin a model for the duration of a ``with`` block (loading it on first use).

        Yields:
            The loaded model; it is not unloaded before the block ends.

        Raises:
            Exception: Whatever the loader raised.
        """
        entry = self._acquire((model, version), pin=True)
        try:
            yield entry.value
        finally:
            self._release(entry)

    def preload(self, keys: Iterable[tuple[str, int]]) -> None:
        """Load every key now, one after another (already loaded ones are only touched).

        Every key is attempted; when some fail, the first error is raised at the end.
        Preloading more than the budget holds unloads the earliest preloaded ones again.
        """
        first_error: Exception | None = None
        for model, version in keys:
            try:
                self._acquire((model, version), pin=False)
            except Exception as exc:
                logger.warning("preloading %s version %s failed: %s", model, version, exc)
                if first_error is None:
                    first_error = exc
        if first_error is not None:
            raise first_error

    def ready(self, keys: Iterable[tuple[str, int]]) -> bool:
        """Whether every key is loaded (not loading, not detached). Loads nothing."""
        with self._lock:
            return all((m, v) in self._entries for m, v in keys)

    def loaded(self) -> list[tuple[str, int]]:
        """The loaded keys, least recently used first (detached entries excluded)."""
        with self._lock:
            return list(self._entries)

    def in_use(self, model: str, version: int) -> int:
        """How many ``use`` blocks currently hold the key (0 when not loaded)."""
        with self._lock:
            entry = self._entries.get((model, version))
            return entry.in_use if entry is not None else 0

    def evict(
        self, model: str, version: int, *, wait: bool = False, timeout: float | None = None
    ) -> bool:
        """Unload a key now, or after its last use ends.

        The entry is detached at once: later requests load it afresh. An idle entry is
        unloaded immediately; one in use is unloaded when its last ``use`` block ends.

        Args:
            model: The model name.
            version: The version.
            wait: Block until the entry is unloaded (do not wait inside its own ``use``
                block: that never ends).
            timeout: With ``wait``, the most seconds to wait.

        Returns:
            True if the key was loaded, False if there was nothing to evict.

        Raises:
            TimeoutError: ``wait`` and the entry was still in use after ``timeout`` seconds.
        """
        unloaded: list[_Entry[M]] = []
        with self._lock:
            entry = self._entries.pop((model, version), None)
            if entry is None:
                return False
            entry.detached = True
            if entry.in_use == 0:
                self._used -= entry.size
                unloaded.append(entry)
            else:
                self._detached.add(entry)
                if wait and not self._released.wait_for(
                    lambda: entry not in self._detached, timeout
                ):
                    raise TimeoutError(f"{model} version {version} still in use after {timeout} s")
        self._notify_unloaded(unloaded)
        return True

    def clear(self) -> None:
        """Evict every entry (entries in use are unloaded after their last use)."""
        for model, version in self.loaded():
            self.evict(model, version)

    # -- internals ------------------------------------------------------------------------

    def _acquire(self, key: Key, *, pin: bool) -> _Entry[M]:
        while True:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                    if pin:
                        entry.in_use += 1
                    return entry
                pending = self._pending.get(key)
                leader = pending is None
                if pending is None:
                    pending = self._pending[key] = _Pending()
            if leader:
                return self._load(key, pending, pin=pin)
            pending.done.wait()
            if pending.error is not None:
                raise pending.error
            # Loaded by another caller: loop to take it (or load again if already evicted).

    def _load(self, key: Key, pending: _Pending, *, pin: bool) -> _Entry[M]:
        model, version = key
        unloaded: list[_Entry[M]] = []
        try:
            value = self._loader(model, version)
            size = _size_of(value, key)
        except BaseException as exc:
            with self._lock:
                del self._pending[key]
            pending.error = exc
            pending.done.set()
            raise
        with self._lock:
            del self._pending[key]
            entry = _Entry(key, value, size, in_use=1 if pin else 0)
            self._entries[key] = entry
            self._used += size
            if size > self._budget:
                logger.warning(
                    "%s version %s needs %d bytes, more than the whole cache budget of %d "
                    "bytes: loaded alone",
                    model,
                    version,
                    size,
                    self._budget,
                )
            unloaded = self._shrink_locked(keep=key)
        pending.done.set()
        self._notify_unloaded(unloaded)
        return entry

    def _release(self, entry: _Entry[M]) -> None:
        unloaded: list[_Entry[M]] = []
        with self._lock:
            entry.in_use -= 1
            if entry.in_use == 0:
                if entry.detached:
                    if entry in self._detached:
                        self._detached.discard(entry)
                        self._used -= entry.size
                        unloaded.append(entry)
                        self._released.notify_all()
                else:
                    unloaded = self._shrink_locked(keep=None)
        self._notify_unloaded(unloaded)

    def _shrink_locked(self, keep: Key | None) -> list[_Entry[M]]:
        """Unload idle entries, least recently used first, until within budget."""
        unloaded: list[_Entry[M]] = []
        if self._used <= self._budget:
            return unloaded
        for key, entry in list(self._entries.items()):
            if self._used <= self._budget:
                break
            if key == keep or entry.in_use > 0:
                continue
            del self._entries[key]
            entry.detached = True
            self._used -= entry.size
            unloaded.append(entry)
        return unloaded

    def _notify_unloaded(self, entries: list[_Entry[M]]) -> None:
        for entry in entries:
            model, version = entry.key
            logger.info("unloaded %s version %s (%d bytes)", model, version, entry.size)
            if self._on_unload is not None:
                try:
                    self._on_unload(model, version, entry.value)
                except Exception:
                    logger.exception("on_unload failed for %s version %s", model, version)


def _size_of(value: SizedModel, key: Key) -> int:
    size = getattr(value, "size_bytes", None)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise TypeError(
            f"loader returned {type(value).__name__} for {key[0]} version {key[1]} without "
            f"a valid size_bytes (an int >= 0), got {size!r}"
        )
    return size
