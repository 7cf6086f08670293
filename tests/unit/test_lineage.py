"""Lineage queries over a real (in-memory SQLite) metadata store populated by hand."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from conveyor.exceptions import NotFoundError
from conveyor.store.lineage import (
    LineageGraph,
    downstream,
    lineage,
    parse_node_id,
    run_graph,
    upstream,
)
from conveyor.store.metadata.records import ArtifactRecord, NewArtifact, RunStatus
from conveyor.store.metadata.store import MetadataStore

STEPS = [("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"])]


@dataclass
class Diamond:
    """Ids of a hand-made diamond run A -> B, A -> C, B + C -> D."""

    run_id: int
    executions: dict[str, int]
    outputs: dict[str, ArtifactRecord]


@pytest.fixture
def store() -> Iterator[MetadataStore]:
    metadata = MetadataStore.open("sqlite:///:memory:")
    yield metadata
    metadata.close()


def _computed_run(store: MetadataStore) -> Diamond:
    pipeline_id = store.register_pipeline("diamond", {"steps": []}, "hash")
    run = store.create_run(pipeline_id, {}, {}, "host", 1)
    ids = store.create_executions(run.id, [(name, name, {}) for name, _ in STEPS])
    outputs: dict[str, ArtifactRecord] = {}
    for name, upstream_steps in STEPS:
        store.start_execution(ids[name], f"key-{name}", {"code": name}, "miss: new", 1, None)
        inputs = {f"in_{u}": outputs[u].id for u in upstream_steps}
        new = NewArtifact("JSON", f"memory://{name}", f"sha-{name}", 10 + len(name))
        outputs[name] = store.succeed_execution(ids[name], inputs, {"output": new})["output"]
    store.finish_run(run.id, RunStatus.SUCCEEDED)
    return Diamond(run.id, ids, outputs)


def _cached_run(store: MetadataStore, first: Diamond) -> Diamond:
    pipeline_id = store.register_pipeline("diamond", {"steps": []}, "hash")
    run = store.create_run(pipeline_id, {}, {}, "host", 1)
    ids = store.create_executions(run.id, [(name, name, {}) for name, _ in STEPS])
    for name, upstream_steps in STEPS:
        store.cache_execution(
            ids[name],
            f"key-{name}",
            {"code": name},
            "hit",
            first.executions[name],
            {f"in_{u}": first.outputs[u].id for u in upstream_steps},
            {"output": first.outputs[name].id},
        )
    store.finish_run(run.id, RunStatus.SUCCEEDED)
    return Diamond(run.id, ids, first.outputs)


def _keys(diamond: Diamond, steps: str) -> set[str]:
    return {f"execution:{diamond.executions[s]}" for s in steps} | {
        f"artifact:{diamond.outputs[s].id}" for s in steps
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12", ("run", 12)),
        ("r12", ("run", 12)),
        ("run:12", ("run", 12)),
        ("RUN:12", ("run", 12)),
        ("e34", ("execution", 34)),
        ("execution:34", ("execution", 34)),
        ("exec:34", ("execution", 34)),
        ("a56", ("artifact", 56)),
        ("artifact:56", ("artifact", 56)),
        (" artifact: 56 ", ("artifact", 56)),
    ],
)
def test_parse_node_id_accepts_documented_forms(text: str, expected: tuple[str, int]) -> None:
    assert parse_node_id(text) == expected


@pytest.mark.parametrize("text", ["", "x12", "model:3", "a", "12a", "artifact:-1", "r1.5"])
def test_parse_node_id_rejects_malformed_ids_with_the_valid_forms(text: str) -> None:
    with pytest.raises(NotFoundError, match=r"not a run, execution or artifact id .*a56"):
        parse_node_id(text)


def test_upstream_of_final_output_lists_every_execution_and_artifact(store) -> None:
    run = _computed_run(store)
    graph = upstream(store, f"artifact:{run.outputs['d'].id}")
    assert set(graph.nodes) == _keys(run, "abcd")
    assert len(graph.edges) == 8  # four outputs, four inputs
    a_exec, a_out = f"execution:{run.executions['a']}", f"artifact:{run.outputs['a'].id}"
    assert (a_exec, a_out) in graph.edges  # producer -> consumer
    assert graph.edge_names[(a_out, f"execution:{run.executions['b']}")] == "in_a"
    assert not graph.truncated


def test_upstream_of_a_middle_output_stops_at_its_ancestors(store) -> None:
    run = _computed_run(store)
    graph = upstream(store, f"artifact:{run.outputs['b'].id}")
    assert set(graph.nodes) == _keys(run, "ab")


def test_downstream_from_first_output_reaches_the_end(store) -> None:
    run = _computed_run(store)
    graph = downstream(store, f"a{run.outputs['a'].id}")
    assert set(graph.nodes) == _keys(run, "bcd") | {f"artifact:{run.outputs['a'].id}"}
    assert graph.direction == "downstream"


def test_downstream_of_an_execution_starts_at_its_outputs(store) -> None:
    run = _computed_run(store)
    graph = downstream(store, f"e{run.executions['c']}")
    assert set(graph.nodes) == _keys(run, "cd")


def test_upstream_prefers_the_original_producer_and_notes_cached_reuse(store) -> None:
    first = _computed_run(store)
    second = _cached_run(store, first)
    graph = upstream(store, f"artifact:{first.outputs['d'].id}")
    assert set(graph.nodes) == _keys(first, "abcd")  # not the cached executions of run 2
    node = graph.nodes[f"artifact:{first.outputs['d'].id}"]
    assert node.reused_by == [second.executions["d"]]
    assert node.to_dict()["reused_by"] == [second.executions["d"]]


def test_run_graph_is_the_runs_own_executions_even_when_cached(store) -> None:
    first = _computed_run(store)
    second = _cached_run(store, first)
    for graph in (run_graph(store, second.run_id), upstream(store, f"run:{second.run_id}")):
        assert set(graph.nodes) == _keys(second, "abcd")
        assert graph.root == f"run:{second.run_id}"
        records = {e.id: e for e in graph.executions()}
        assert records[second.executions["d"]].cached_from == first.executions["d"]


def test_downstream_from_a_run_reaches_later_runs_that_reused_its_outputs(store) -> None:
    first = _computed_run(store)
    second = _cached_run(store, first)
    graph = downstream(store, str(first.run_id))
    assert _keys(first, "abcd") <= set(graph.nodes)
    assert f"execution:{second.executions['d']}" in graph.nodes


def test_max_depth_bounds_the_walk_and_says_so(store) -> None:
    run = _computed_run(store)
    graph = upstream(store, f"artifact:{run.outputs['d'].id}", max_depth=2)
    # d_out <- d (1 edge) <- b_out, c_out (2 edges); stops before b and c.
    assert set(graph.nodes) == {
        f"artifact:{run.outputs['d'].id}",
        f"execution:{run.executions['d']}",
        f"artifact:{run.outputs['b'].id}",
        f"artifact:{run.outputs['c'].id}",
    }
    assert graph.truncated


def test_to_dict_has_stable_keys_and_iso_timestamps(store) -> None:
    run = _computed_run(store)
    data = lineage(store, ("execution", run.executions["a"]), "downstream").to_dict()
    assert set(data) == {"root", "direction", "truncated", "nodes", "edges"}
    execution = next(n for n in data["nodes"] if n["kind"] == "execution")
    assert {"id", "run_id", "step", "status", "cached_from", "started_at"} <= set(execution)
    assert "T" in execution["ended_at"]
    assert data["edges"][0].keys() == {"from", "to", "name"}


@pytest.mark.parametrize("node_id", ["artifact:999", "e999", "run:999"])
def test_unknown_ids_raise_not_found(store, node_id: str) -> None:
    _computed_run(store)
    with pytest.raises(NotFoundError, match="999"):
        upstream(store, node_id)


def test_graph_helpers_follow_edge_direction() -> None:
    graph = LineageGraph(root="artifact:2", direction="upstream")
    graph.add_edge("execution:1", "artifact:2", "output")
    graph.add_edge("execution:1", "artifact:2", "output")
    assert graph.edges == [("execution:1", "artifact:2")]
    assert graph.producers("artifact:2") == ["execution:1"]
    assert graph.consumers("execution:1") == ["artifact:2"]
