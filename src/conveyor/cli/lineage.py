"""``conveyor lineage ID [--upstream|--downstream]``: lineage as a tree, or as JSON.

The query itself lives in :mod:`conveyor.store.lineage`; this module only draws the
graph. A graph is a DAG (one artifact can feed several steps), so a node already drawn is
shown again as a one-line reference instead of being expanded twice.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text
from rich.tree import Tree

from conveyor.cli.render import human_size, out_console, print_json, status_text
from conveyor.cli.state import read_store
from conveyor.store.lineage import Direction, LineageGraph, LineageNode, lineage, parse_node_id
from conveyor.store.metadata.records import ArtifactRecord, ExecutionRecord, ExecutionStatus
from conveyor.store.metadata.store import MetadataStore

__all__ = ["lineage_command", "lineage_tree"]


def lineage_command(
    ctx: typer.Context,
    node: Annotated[
        str,
        typer.Argument(
            metavar="ID",
            help="A run (run:12, r12 or 12), an execution (execution:34 or e34) or an "
            "artifact (artifact:56 or a56).",
        ),
    ],
    upstream: Annotated[
        bool, typer.Option("--upstream", help="What made it (the default).")
    ] = False,
    downstream: Annotated[
        bool, typer.Option("--downstream", help="What it fed, recursively.")
    ] = False,
    depth: Annotated[
        int | None,
        typer.Option(
            "--depth", min=0, help="Stop after N edges (default: no limit).", show_default=False
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help='JSON {"nodes": [...], "edges": [...]}.')
    ] = False,
) -> None:
    """Trace lineage: the executions and artifacts upstream or downstream of ID.

    ID is a run (run:12, r12 or a bare 12), an execution (execution:34 or e34) or an
    artifact (artifact:56 or a56). Upstream of an artifact: the execution that produced it,
    its inputs, their producers, recursively. Downstream: the executions that consumed
    it, their outputs, recursively. From a run: all its executions and artifacts.
    """
    if upstream and downstream:
        raise typer.BadParameter("choose one of --upstream and --downstream")
    direction: Direction = "downstream" if downstream else "upstream"
    kind_id = parse_node_id(node)
    with read_store(ctx) as store:
        graph = lineage(store, kind_id, direction, max_depth=depth)
        run_label = _run_label(store, kind_id[1]) if kind_id[0] == "run" else None
    if json_output:
        print_json(graph.to_dict())
        return
    out_console().print(lineage_tree(graph, run_label))
    if graph.truncated:
        out_console().print(f"(stopped at depth {depth}; use a larger --depth to see more)")


def _run_label(store: MetadataStore, run_id: int) -> Text:
    run = store.get_run(run_id)
    return Text.assemble(
        (f"run {run.id}", "bold"), f" pipeline {run.pipeline_name} ", status_text(run.status)
    )


def node_label(node: LineageNode) -> Text:
    """One line describing an execution or an artifact."""
    record = node.record
    if isinstance(record, ExecutionRecord):
        text = Text.assemble(
            (f"execution {record.id}", "bold"),
            f" step {record.step_name}",
            ("" if record.component_name == record.step_name else f" ({record.component_name})"),
            f" run {record.run_id} ",
            status_text(record.status),
        )
        if record.status == ExecutionStatus.CACHED and record.cached_from is not None:
            text.append(f" reused execution {record.cached_from}", style="blue")
        return text
    artifact: ArtifactRecord = record
    text = Text.assemble(
        (f"artifact {artifact.id}", "bold cyan"),
        f" {artifact.type_name} {human_size(artifact.size)} sha256 {artifact.sha256[:12]}",
    )
    if node.reused_by:
        reused = ", ".join(str(i) for i in node.reused_by)
        text.append(f" (reused by cached execution {reused})", style="blue")
    return text


def _roots(graph: LineageGraph) -> list[str]:
    """Where the tree starts: the queried node, or for a run its ends (sinks upstream,
    sources downstream)."""
    if graph.root in graph.nodes:
        return [graph.root]
    if graph.direction == "upstream":
        has_edge = {src for src, _ in graph.edges}
    else:
        has_edge = {dst for _, dst in graph.edges}
    return [key for key in graph.nodes if key not in has_edge]


def lineage_tree(graph: LineageGraph, run_label: Text | None = None) -> Tree:
    """A rich Tree of ``graph``: producers under consumers upstream, the reverse downstream."""
    roots = _roots(graph)
    drawn: set[str] = set()
    if run_label is not None or len(roots) != 1:
        tree = Tree(run_label or Text(graph.root, style="bold"))
        for key in roots:
            _grow(graph, tree, key, None, drawn)
        return tree
    tree = Tree(node_label(graph.nodes[roots[0]]))
    drawn.add(roots[0])
    for child, name in _children(graph, roots[0]):
        _grow(graph, tree, child, name, drawn)
    return tree


def _children(graph: LineageGraph, key: str) -> list[tuple[str, str]]:
    if graph.direction == "upstream":
        return [(src, graph.edge_names[(src, key)]) for src in graph.producers(key)]
    return [(dst, graph.edge_names[(key, dst)]) for dst in graph.consumers(key)]


def _grow(graph: LineageGraph, parent: Tree, key: str, edge: str | None, drawn: set[str]) -> None:
    label = Text(f"{edge}: ", style="dim") if edge else Text()
    label.append_text(node_label(graph.nodes[key]))
    if key in drawn:
        label.append(" (shown above)", style="dim")
        parent.add(label)
        return
    drawn.add(key)
    branch = parent.add(label)
    for child, name in _children(graph, key):
        _grow(graph, branch, child, name, drawn)
