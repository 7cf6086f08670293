"""Lineage queries: which executions and artifacts made something, and what it fed.

Pure read logic over the :class:`~conveyor.store.metadata.store.MetadataStore` API; nothing
here prints. A query walks the input/output events breadth-first from a starting run,
execution or artifact and returns a :class:`LineageGraph`: nodes keyed ``"artifact:ID"`` /
``"execution:ID"`` and edges pointing from producer to consumer (an execution to the
artifacts it wrote, an artifact to the executions that read it).

Caching: a cached execution records the outputs it reused as its own, so an artifact can
have several producers. Walking upstream from an artifact follows its *original* producer
(the first execution that really computed it) and notes the cached executions in
:attr:`LineageNode.reused_by`; walking from a run follows the run's own executions, cached
or not, because that is what the run did.

Ids on the command line: ``run:12`` / ``r12`` / ``12`` (a run), ``execution:34`` / ``e34``,
``artifact:56`` / ``a56`` (see :func:`parse_node_id`).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from conveyor.exceptions import NotFoundError
from conveyor.store.metadata.records import (
    ArtifactRecord,
    EventKind,
    ExecutionRecord,
    ExecutionStatus,
)
from conveyor.store.metadata.store import MetadataStore

__all__ = [
    "Direction",
    "LineageGraph",
    "LineageNode",
    "NodeKind",
    "downstream",
    "lineage",
    "node_key",
    "parse_node_id",
    "run_graph",
    "upstream",
]

NodeKind = Literal["run", "execution", "artifact"]
Direction = Literal["upstream", "downstream"]

_KINDS: dict[str, NodeKind] = {
    "run": "run",
    "r": "run",
    "execution": "execution",
    "exec": "execution",
    "e": "execution",
    "artifact": "artifact",
    "art": "artifact",
    "a": "artifact",
}
_ID_PATTERN = re.compile(r"^\s*(?:([a-z]+)\s*:?\s*)?#?(\d+)\s*$", re.IGNORECASE)
ID_HELP = "run:12 / r12 / 12 (a run), execution:34 / e34, artifact:56 / a56"


def parse_node_id(text: str) -> tuple[NodeKind, int]:
    """Parse a lineage id typed by a person.

    Raises:
        NotFoundError: ``text`` is not one of the accepted forms.

    Example:
        >>> parse_node_id("e34")
        ('execution', 34)
        >>> parse_node_id("12")
        ('run', 12)
    """
    match = _ID_PATTERN.match(text)
    kind = _KINDS.get((match.group(1) or "run").lower()) if match else None
    if match is None or kind is None:
        raise NotFoundError(f"{text!r} is not a run, execution or artifact id (use {ID_HELP})")
    return kind, int(match.group(2))


def node_key(kind: NodeKind, record_id: int) -> str:
    """The graph key of a node, e.g. ``node_key("artifact", 5) == "artifact:5"``."""
    return f"{kind}:{record_id}"


@dataclass
class LineageNode:
    """One execution or artifact in a lineage graph.

    Attributes:
        key: ``"execution:ID"`` or ``"artifact:ID"``.
        kind: ``"execution"`` or ``"artifact"``.
        record: the store's record for it.
        reused_by: for artifacts, ids of cached executions that reused it instead of
            computing it again.
    """

    key: str
    kind: Literal["execution", "artifact"]
    record: ExecutionRecord | ArtifactRecord
    reused_by: list[int] = field(default_factory=list)

    @property
    def id(self) -> int:
        """The record id (without the kind prefix)."""
        return self.record.id

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description with stable keys and ISO-8601 timestamps."""
        base: dict[str, Any] = {"id": self.key, "kind": self.kind, "record_id": self.record.id}
        record = self.record
        if isinstance(record, ExecutionRecord):
            base.update(
                run_id=record.run_id,
                step=record.step_name,
                component=record.component_name,
                status=str(record.status),
                cached_from=record.cached_from,
                started_at=_iso(record.started_at),
                ended_at=_iso(record.ended_at),
            )
        else:
            base.update(
                type=record.type_name,
                uri=record.uri,
                sha256=record.sha256,
                size=record.size,
                created_at=_iso(record.created_at),
                reused_by=list(self.reused_by),
            )
        return base


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass
class LineageGraph:
    """Executions and artifacts connected by producer -> consumer edges.

    Attributes:
        root: key of the node the query started from (``"run:ID"`` for a run query, which
            is not itself a node).
        direction: ``"upstream"`` or ``"downstream"``.
        nodes: nodes by key, in discovery order.
        edges: (producer key, consumer key) pairs, without repeats.
        edge_names: the input or output name of each edge.
        truncated: True when ``max_depth`` stopped the walk before it ran out of nodes.
    """

    root: str
    direction: Direction
    nodes: dict[str, LineageNode] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)
    edge_names: dict[tuple[str, str], str] = field(default_factory=dict)
    truncated: bool = False

    def add_edge(self, producer: str, consumer: str, name: str) -> None:
        """Record an edge once."""
        if (producer, consumer) not in self.edge_names:
            self.edges.append((producer, consumer))
            self.edge_names[(producer, consumer)] = name

    def producers(self, key: str) -> list[str]:
        """Keys of the nodes with an edge into ``key``."""
        return [src for src, dst in self.edges if dst == key]

    def consumers(self, key: str) -> list[str]:
        """Keys of the nodes ``key`` has an edge to."""
        return [dst for src, dst in self.edges if src == key]

    def executions(self) -> list[ExecutionRecord]:
        """Execution records in the graph, in discovery order."""
        return [n.record for n in self.nodes.values() if isinstance(n.record, ExecutionRecord)]

    def artifacts(self) -> list[ArtifactRecord]:
        """Artifact records in the graph, in discovery order."""
        return [n.record for n in self.nodes.values() if isinstance(n.record, ArtifactRecord)]

    def to_dict(self) -> dict[str, Any]:
        """``{"root", "direction", "truncated", "nodes": [...], "edges": [...]}``."""
        return {
            "root": self.root,
            "direction": self.direction,
            "truncated": self.truncated,
            "nodes": [node.to_dict() for node in self.nodes.values()],
            "edges": [
                {"from": src, "to": dst, "name": self.edge_names[(src, dst)]}
                for src, dst in self.edges
            ],
        }


class _Walker:
    """Breadth-first walk over events with a visited set and an optional depth bound."""

    def __init__(self, store: MetadataStore, graph: LineageGraph, max_depth: int | None) -> None:
        self.store = store
        self.graph = graph
        self.max_depth = max_depth
        self.queue: deque[tuple[str, int]] = deque()
        self._executions: dict[int, ExecutionRecord] = {}

    # -- node bookkeeping -----------------------------------------------------------------
    def execution(self, execution_id: int) -> ExecutionRecord:
        if execution_id not in self._executions:
            self._executions[execution_id] = self.store.get_execution(execution_id)
        return self._executions[execution_id]

    def add_execution(self, record: ExecutionRecord, depth: int) -> str:
        key = node_key("execution", record.id)
        self._executions[record.id] = record
        if key not in self.graph.nodes:
            self.graph.nodes[key] = LineageNode(key, "execution", record)
            self._enqueue(key, depth)
        return key

    def add_artifact(self, record: ArtifactRecord, depth: int) -> str:
        key = node_key("artifact", record.id)
        if key not in self.graph.nodes:
            self.graph.nodes[key] = LineageNode(key, "artifact", record)
            self._note_reuse(self.graph.nodes[key])
            self._enqueue(key, depth)
        return key

    def _enqueue(self, key: str, depth: int) -> None:
        self.queue.append((key, depth))

    def _note_reuse(self, node: LineageNode) -> None:
        node.reused_by = [
            event.execution_id
            for event in self.store.events_for_artifact(node.id)
            if event.kind == EventKind.OUTPUT
            and self.execution(event.execution_id).status == ExecutionStatus.CACHED
        ]

    # -- walking ----------------------------------------------------------------------------
    def run(self) -> LineageGraph:
        while self.queue:
            key, depth = self.queue.popleft()
            if self.max_depth is not None and depth >= self.max_depth:
                if self._has_neighbours(key):
                    self.graph.truncated = True
                continue
            self._expand(key, depth)
        return self.graph

    def _expand(self, key: str, depth: int) -> None:
        node = self.graph.nodes[key]
        upstream = self.graph.direction == "upstream"
        if node.kind == "execution":
            step = self.store.execution_inputs if upstream else self.store.execution_outputs
            for name, artifact in step(node.id).items():
                art_key = self.add_artifact(artifact, depth + 1)
                edge = (art_key, key) if upstream else (key, art_key)
                self.graph.add_edge(*edge, name)
            return
        for name, execution in self._artifact_neighbours(node.id, upstream):
            exec_key = self.add_execution(execution, depth + 1)
            edge = (exec_key, key) if upstream else (key, exec_key)
            self.graph.add_edge(*edge, name)

    def _artifact_neighbours(
        self, artifact_id: int, upstream: bool
    ) -> list[tuple[str, ExecutionRecord]]:
        kind = EventKind.OUTPUT if upstream else EventKind.INPUT
        events = [e for e in self.store.events_for_artifact(artifact_id) if e.kind == kind]
        pairs = [(e.name, self.execution(e.execution_id)) for e in events]
        if not upstream:
            return pairs
        return _original_producer(pairs)

    def seed_run(self, run_id: int, walk_beyond: bool) -> None:
        """Add the run's executions and every artifact they read or wrote, with edges.

        The run's own (possibly cached) executions are the producers inside the run. With
        ``walk_beyond``, artifacts the run read but did not write are then walked upstream,
        or the run's outputs downstream.
        """
        self.store.get_run(run_id)  # NotFoundError for an unknown run
        produced: dict[int, ArtifactRecord] = {}
        consumed: dict[int, ArtifactRecord] = {}
        for execution in self.store.list_executions(run_id):
            exec_key = node_key("execution", execution.id)
            self._executions[execution.id] = execution
            self.graph.nodes[exec_key] = LineageNode(exec_key, "execution", execution)
            for name, artifact in self.store.execution_outputs(execution.id).items():
                produced[artifact.id] = artifact
                self.graph.add_edge(exec_key, node_key("artifact", artifact.id), name)
            for name, artifact in self.store.execution_inputs(execution.id).items():
                consumed[artifact.id] = artifact
                self.graph.add_edge(node_key("artifact", artifact.id), exec_key, name)
        if self.graph.direction == "upstream":
            walk_on = consumed.keys() - produced.keys()
        else:
            walk_on = set(produced)
        for artifact in [*produced.values(), *consumed.values()]:
            key = node_key("artifact", artifact.id)
            if key not in self.graph.nodes:
                self.graph.nodes[key] = LineageNode(key, "artifact", artifact)
                self._note_reuse(self.graph.nodes[key])
                if walk_beyond and artifact.id in walk_on:
                    self._enqueue(key, 1)

    def _has_neighbours(self, key: str) -> bool:
        node = self.graph.nodes[key]
        upstream = self.graph.direction == "upstream"
        if node.kind == "execution":
            step = self.store.execution_inputs if upstream else self.store.execution_outputs
            return bool(step(node.id))
        return bool(self._artifact_neighbours(node.id, upstream))


def _original_producer(
    pairs: list[tuple[str, ExecutionRecord]],
) -> list[tuple[str, ExecutionRecord]]:
    """The first non-cached producer (or the first producer when every one was cached)."""
    computed = [pair for pair in pairs if pair[1].status != ExecutionStatus.CACHED]
    chosen = computed or pairs
    return sorted(chosen, key=lambda pair: pair[1].id)[:1]


def lineage(
    store: MetadataStore,
    node_id: str | tuple[NodeKind, int],
    direction: Direction = "upstream",
    max_depth: int | None = None,
) -> LineageGraph:
    """Walk lineage from a run, execution or artifact.

    Args:
        store: the metadata store to read.
        node_id: ``"artifact:5"``, ``"e3"``, ``"12"`` ... or an already parsed (kind, id).
        direction: ``"upstream"`` (what made it) or ``"downstream"`` (what it fed).
        max_depth: stop after this many edges from the start (None: walk everything; the
            visited set guarantees the walk ends).

    Raises:
        NotFoundError: malformed id, or no record with that id.

    Example:
        >>> graph = lineage(store, "artifact:5", "upstream")  # doctest: +SKIP
        >>> sorted(graph.nodes)  # doctest: +SKIP
        ['artifact:3', 'artifact:5', 'execution:1', 'execution:2']
    """
    kind, record_id = parse_node_id(node_id) if isinstance(node_id, str) else node_id
    if direction not in ("upstream", "downstream"):
        raise ValueError(f"direction must be 'upstream' or 'downstream', not {direction!r}")
    graph = LineageGraph(root=node_key(kind, record_id), direction=direction)
    walker = _Walker(store, graph, max_depth)
    if kind == "run":
        walker.seed_run(record_id, walk_beyond=True)
    elif kind == "execution":
        walker.add_execution(store.get_execution(record_id), 0)
    elif kind == "artifact":
        walker.add_artifact(store.get_artifact(record_id), 0)
    else:
        raise NotFoundError(f"unknown lineage node kind {kind!r} (use {ID_HELP})")
    return walker.run()


def upstream(
    store: MetadataStore, node_id: str | tuple[NodeKind, int], max_depth: int | None = None
) -> LineageGraph:
    """Everything that went into ``node_id``: producers, their inputs, recursively.

    See :func:`lineage` for the arguments.
    """
    return lineage(store, node_id, "upstream", max_depth)


def downstream(
    store: MetadataStore, node_id: str | tuple[NodeKind, int], max_depth: int | None = None
) -> LineageGraph:
    """Everything ``node_id`` fed: consumers, their outputs, recursively.

    See :func:`lineage` for the arguments.
    """
    return lineage(store, node_id, "downstream", max_depth)


def run_graph(store: MetadataStore, run_id: int) -> LineageGraph:
    """The executions of one run and the artifacts they read and wrote, nothing more.

    Raises:
        NotFoundError: no run with that id.
    """
    graph = LineageGraph(root=node_key("run", run_id), direction="upstream")
    walker = _Walker(store, graph, None)
    walker.seed_run(run_id, walk_beyond=False)
    return graph
