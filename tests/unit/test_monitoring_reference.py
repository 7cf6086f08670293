"""Finding a version's references never fails: what cannot be reached becomes a note."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.config import load_settings
from conveyor.exceptions import ConveyorError
from conveyor.monitoring.reference import _local, find_reference
from conveyor.registry import ModelRegistry
from conveyor.store.workspace import Workspace
from serving_support import store_bundle


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = Workspace.open(load_settings(home=tmp_path / "home"))
    yield workspace
    workspace.close()


def test_a_bundle_without_lineage_has_its_signature_and_notes(
    ws: Workspace, tmp_path: Path
) -> None:
    artifact_id, _ = store_bundle(ws, tmp_path / "bundle")
    ModelRegistry(ws).register("loose", artifact_id, require_blessing=False)
    ref = find_reference(ws, "loose", "1")
    assert [(c.name, c.type) for c in ref.inputs] == [
        ("x", "number"),
        ("n", "number"),
        ("city", "text"),
    ]
    assert (ref.task, ref.classes) == ("binary", (0, 1))
    assert ref.features == {} and ref.prediction is None
    assert "loose:1 has no reachable training data" in ref.notes["drift"]
    assert ref.notes["prediction_drift"].startswith("no evaluation data reachable")
    assert ref.found == {"bundle": f"a{artifact_id}"}


def test_unknown_versions_and_deleted_bundles_are_notes(ws: Workspace, tmp_path: Path) -> None:
    assert "census:4 is not in the registry" in find_reference(ws, "census", "4").notes["drift"]
    assert "names no version number ('')" in find_reference(ws, "census", "").notes["drift"]
    artifact_id, folder = store_bundle(ws, tmp_path / "bundle")
    ModelRegistry(ws).register("gone", artifact_id, require_blessing=False)
    shutil.rmtree(folder)
    ref = find_reference(ws, "gone", "1")
    assert "cannot be read" in ref.notes["bundle"] and ref.inputs == []


def test_errors_inside_a_reached_folder_propagate(ws: Workspace, tmp_path: Path) -> None:
    _, folder = store_bundle(ws, tmp_path / "bundle")
    ref = find_reference(ws, "nothing", "1")
    with (
        pytest.raises(ConveyorError, match="raised by the caller"),
        _local(ws, str(folder), ref, "bundle") as reached,
    ):
        assert reached == folder
        raise ConveyorError("raised by the caller")
