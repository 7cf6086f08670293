"""The artifact store: content addressing, publishing, markers, staging and sweeping."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.core import materializers
from conveyor.exceptions import ArtifactStoreError
from conveyor.store import ArtifactStore, StoredArtifact
from conveyor.store import artifact_store as store_module
from conveyor.store.artifact_store import MARKER_NAME, fingerprint_folder


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore.open(str(tmp_path / "arts"))


@pytest.fixture
def memory_store() -> Iterator[ArtifactStore]:
    url = f"memory://arts-{uuid.uuid4().hex}"
    yield ArtifactStore.open(url)
    fs, path = fsspec.core.url_to_fs(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def _publish(store: ArtifactStore, files: dict[str, bytes], type_name: str = "T") -> StoredArtifact:
    with store.staging() as folder:
        _write_tree(folder, files)
        return store.publish(folder, type_name)


def _write_tree(folder: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _objects(root: Path) -> list[Path]:
    objects = root / "objects"
    return sorted(p for p in objects.glob("*/*")) if objects.exists() else []


# -- opening -------------------------------------------------------------------------------


def test_open_local_path_and_file_url_give_the_same_absolute_root(tmp_path: Path) -> None:
    by_path = ArtifactStore.open(str(tmp_path / "a"))
    by_url = ArtifactStore.open(f"file://{tmp_path / 'a'}")
    assert by_path.url == by_url.url == str(tmp_path / "a")


def test_open_memory_url_keeps_the_url() -> None:
    assert ArtifactStore.open("memory://somewhere/").url == "memory://somewhere"


def test_open_unknown_protocol_raises() -> None:
    with pytest.raises(ArtifactStoreError, match=r"cannot open artifact store 'nosuchproto://x'"):
        ArtifactStore.open("nosuchproto://x")


def test_marker_name_is_shared_with_the_engine() -> None:
    assert materializers.MARKER_NAME == MARKER_NAME


# -- publishing on a local root ------------------------------------------------------------


def test_publish_moves_the_payload_under_its_content_address(store: ArtifactStore) -> None:
    with store.staging() as folder:
        (folder / "data.json").write_text('{"a":1}')
        (folder / "sub").mkdir()
        (folder / "sub" / "x.bin").write_bytes(b"\x00\x01")
        stored = store.publish(folder, "JSON")
        assert not folder.exists()
    sha, size = stored.sha256, stored.size
    assert stored.uri == str(Path(store.url) / "objects" / sha[:2] / sha)
    assert size == 7 + 2
    marker = json.loads((Path(stored.uri) / MARKER_NAME).read_text())
    assert marker == {
        "sha256": sha,
        "size": size,
        "type_name": "JSON",
        "files": ["data.json", "sub/x.bin"],
    }
    assert store.exists(stored.uri)
    assert fingerprint_folder(Path(stored.uri), "JSON") == (sha, size)


def test_published_files_are_read_only(store: ArtifactStore) -> None:
    stored = _publish(store, {"a.txt": b"hello"})
    mode = (Path(stored.uri) / "a.txt").stat().st_mode
    assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def test_identical_content_is_stored_once(store: ArtifactStore) -> None:
    first = _publish(store, {"a.txt": b"same"})
    second = _publish(store, {"a.txt": b"same"})
    assert first == second
    assert len(_objects(Path(store.url))) == 1
    assert list((Path(store.url) / ".tmp").iterdir()) == []


def test_same_bytes_under_another_type_is_another_artifact(store: ArtifactStore) -> None:
    assert _publish(store, {"a": b"x"}, "A").sha256 != _publish(store, {"a": b"x"}, "B").sha256


def test_concurrent_publisher_losing_the_rename_treats_it_as_published(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    original_seal = store_module._seal
    with store.staging() as winner, store.staging() as loser:
        _write_tree(winner, {"a.txt": b"race"})
        _write_tree(loser, {"a.txt": b"race"})

        def seal_after_the_other_process_won(
            folder: Path, scan: store_module._Scan, durable: bool
        ) -> None:
            if folder == loser:  # between our existence check and our rename
                store.publish(winner, "T")
            original_seal(folder, scan, durable)

        monkeypatch.setattr(store_module, "_seal", seal_after_the_other_process_won)
        stored = store.publish(loser, "T")
        assert not loser.exists()
    assert store.exists(stored.uri)
    assert len(_objects(Path(store.url))) == 1


def test_destination_without_marker_is_replaced(store: ArtifactStore) -> None:
    stored = _publish(store, {"a.txt": b"content"})
    (Path(stored.uri) / MARKER_NAME).unlink()  # damaged by hand
    assert not store.exists(stored.uri)
    again = _publish(store, {"a.txt": b"content"})
    assert again == stored
    assert store.exists(stored.uri)
    assert store.verify(stored.uri) == stored


def test_payload_may_not_contain_the_marker(store: ArtifactStore) -> None:
    with store.staging() as folder:
        (folder / MARKER_NAME).write_text("{}")
        with pytest.raises(ArtifactStoreError, match=f"may not contain {MARKER_NAME}"):
            store.publish(folder, "T")


def test_payload_may_not_contain_symlinks(store: ArtifactStore, tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("x")
    with store.staging() as folder:
        (folder / "link.txt").symlink_to(tmp_path / "outside.txt")
        with pytest.raises(ArtifactStoreError, match=r"payload may not contain symlinks"):
            store.publish(folder, "T")
    assert _objects(Path(store.url)) == []


def test_invalid_type_name_is_rejected(store: ArtifactStore) -> None:
    with store.staging() as folder, pytest.raises(ArtifactStoreError, match=r"invalid artifact"):
        store.publish(folder, "")


def test_staging_folder_is_removed_when_not_published(store: ArtifactStore) -> None:
    with store.staging() as folder:
        (folder / "a.txt").write_text("x")
    assert not folder.exists()


def test_publish_of_a_folder_outside_the_store_consumes_it(
    store: ArtifactStore, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    _write_tree(outside, {"a.txt": b"x"})
    stored = store.publish(outside, "T")
    assert not outside.exists()
    assert store.exists(stored.uri)


def test_local_folder_of_a_missing_artifact_names_the_uri(store: ArtifactStore) -> None:
    missing = str(Path(store.url) / "objects" / "ab" / ("ab" * 32))
    assert not store.exists(missing)
    with (
        pytest.raises(ArtifactStoreError, match=f"artifact {missing} does not exist"),
        store.local_folder(missing),
    ):
        pass


def test_local_folder_is_the_object_folder_on_local_roots(store: ArtifactStore) -> None:
    stored = _publish(store, {"a.txt": b"x"})
    with store.local_folder(stored.uri) as folder:
        assert folder == Path(stored.uri)
        assert (folder / "a.txt").read_bytes() == b"x"


def test_verify_detects_an_altered_payload(store: ArtifactStore) -> None:
    stored = _publish(store, {"a.txt": b"x"})
    path = Path(stored.uri) / "a.txt"
    path.chmod(0o644)
    path.write_bytes(b"y")
    with pytest.raises(ArtifactStoreError, match=r"is corrupted"):
        store.verify(stored.uri)


def test_non_durable_store_publishes_the_same_address(tmp_path: Path) -> None:
    durable = ArtifactStore.open(str(tmp_path / "a"))
    fast = ArtifactStore.open(str(tmp_path / "b"), durable=False)
    assert _publish(durable, {"x": b"1"}).sha256 == _publish(fast, {"x": b"1"}).sha256


# -- fingerprints --------------------------------------------------------------------------

_names = st.text(alphabet="abcdefghij_-.", min_size=1, max_size=8).filter(
    lambda n: n not in (".", "..", MARKER_NAME)
)
_relpaths = st.lists(_names, min_size=1, max_size=3).map("/".join)
_trees = st.dictionaries(_relpaths, st.binary(max_size=64), min_size=1, max_size=6).filter(
    lambda tree: not any(a != b and b.startswith(a + "/") for a in tree for b in tree)
)


def _fingerprint(files: dict[str, bytes], type_name: str = "T") -> tuple[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        _write_tree(Path(tmp), files)
        return fingerprint_folder(Path(tmp), type_name)


@settings(max_examples=60, deadline=None)
@given(_trees)
def test_fingerprint_ignores_creation_order_and_location(files: dict[str, bytes]) -> None:
    reordered = dict(reversed(list(files.items())))
    sha, size = _fingerprint(files)
    assert _fingerprint(reordered) == (sha, size)
    assert size == sum(len(data) for data in files.values())


@settings(max_examples=60, deadline=None)
@given(_trees, st.data())
def test_fingerprint_changes_when_any_byte_changes(
    files: dict[str, bytes], data: st.DataObject
) -> None:
    rel = data.draw(st.sampled_from(sorted(files)))
    content = files[rel]
    if content:
        index = data.draw(st.integers(0, len(content) - 1))
        changed = content[:index] + bytes([content[index] ^ 0xFF]) + content[index + 1 :]
    else:
        changed = b"\x00"
    assert _fingerprint({**files, rel: changed}) != _fingerprint(files)


@settings(max_examples=60, deadline=None)
@given(_trees, st.data())
def test_fingerprint_changes_when_a_file_is_renamed(
    files: dict[str, bytes], data: st.DataObject
) -> None:
    rel = data.draw(st.sampled_from(sorted(files)))
    renamed = {(k + "x" if k == rel else k): v for k, v in files.items()}
    if len(renamed) == len(files) and not any(
        a != b and b.startswith(a + "/") for a in renamed for b in renamed
    ):
        assert _fingerprint(renamed) != _fingerprint(files)


@settings(max_examples=30, deadline=None)
@given(_trees, st.text(min_size=1, max_size=10).filter(lambda t: "\0" not in t and t != "T"))
def test_fingerprint_changes_with_the_artifact_type(files: dict[str, bytes], other: str) -> None:
    assert _fingerprint(files, "T") != _fingerprint(files, other)


def test_fingerprint_does_not_confuse_path_and_content_boundaries() -> None:
    assert _fingerprint({"ab": b"c"}) != _fingerprint({"a": b"bc"})
    assert _fingerprint({"a": b"", "b": b"x"}) != _fingerprint({"a": b"x", "b": b""})


# -- sweeping staging ----------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sweep_removes_staging_of_dead_processes_only(store: ArtifactStore) -> None:
    tmp = Path(store.url) / ".tmp"
    tmp.mkdir(parents=True)
    dead = tmp / f"{_dead_pid()}-{uuid.uuid4().hex}"
    alive_other = tmp / f"{os.getppid()}-{uuid.uuid4().hex}"
    for folder in (dead, alive_other):
        folder.mkdir()
        (folder / "part").write_bytes(b"x" * 10)
    with store.staging() as mine:
        assert store.sweep_staging() == 1
        assert store.sweep_staging(max_age_s=0.0) == 1  # the old one of a live process
        assert mine.exists()
    assert not dead.exists()
    assert not alive_other.exists()


def test_sweep_keeps_fresh_staging_of_live_processes(store: ArtifactStore) -> None:
    tmp = Path(store.url) / ".tmp"
    tmp.mkdir(parents=True)
    live = tmp / f"{os.getppid()}-{uuid.uuid4().hex}"
    live.mkdir()
    assert store.sweep_staging() == 0
    old = time.time() - 7200
    os.utime(live, (old, old))
    assert store.sweep_staging() == 1


def test_sweep_of_a_store_never_written_to_is_a_no_op(store: ArtifactStore) -> None:
    assert store.sweep_staging() == 0


# -- other filesystems (memory://) ---------------------------------------------------------


def test_memory_store_round_trip(memory_store: ArtifactStore) -> None:
    with memory_store.staging() as folder:
        _write_tree(folder, {"data.json": b"{}", "sub/b.bin": b"\x01\x02"})
        stored = memory_store.publish(folder, "JSON")
        assert not folder.exists()
    assert stored.uri == f"{memory_store.url}/objects/{stored.sha256[:2]}/{stored.sha256}"
    assert memory_store.exists(stored.uri)
    with memory_store.local_folder(stored.uri) as local:
        assert (local / "data.json").read_bytes() == b"{}"
        assert (local / "sub" / "b.bin").read_bytes() == b"\x01\x02"
        assert json.loads((local / MARKER_NAME).read_text())["type_name"] == "JSON"
        assert fingerprint_folder(local, "JSON") == (stored.sha256, stored.size)
    assert not local.exists()
    assert memory_store.verify(stored.uri) == stored


def test_memory_store_uploads_the_marker_last(
    memory_store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, _ = fsspec.core.url_to_fs(memory_store.url)
    calls: list[str] = []
    original_put, original_pipe = fs.put_file, fs.pipe_file
    monkeypatch.setattr(
        fs, "put_file", lambda lp, rp, **kw: calls.append(rp) or original_put(lp, rp, **kw)
    )
    monkeypatch.setattr(
        fs, "pipe_file", lambda p, v, **kw: calls.append(p) or original_pipe(p, v, **kw)
    )
    _publish(memory_store, {"a": b"1", "b": b"2"})
    assert [c.rsplit("/", 1)[1] for c in calls] == ["a", "b", MARKER_NAME]


def test_memory_store_publishing_twice_uploads_once(
    memory_store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _publish(memory_store, {"a": b"1"})
    fs, _ = fsspec.core.url_to_fs(memory_store.url)
    monkeypatch.setattr(fs, "put_file", lambda *a, **k: pytest.fail("uploaded again"))
    assert _publish(memory_store, {"a": b"1"}) == first


def test_memory_store_partial_upload_is_not_an_artifact(
    memory_store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, _ = fsspec.core.url_to_fs(memory_store.url)

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("connection reset")

    monkeypatch.setattr(fs, "pipe_file", fail)
    with memory_store.staging() as folder:
        (folder / "a").write_bytes(b"1")
        with pytest.raises(ArtifactStoreError, match=r"cannot upload .*connection reset"):
            memory_store.publish(folder, "T")
    monkeypatch.undo()
    uri = memory_store.uri_for(fingerprint_of({"a": b"1"}))
    assert not memory_store.exists(uri)
    with (
        pytest.raises(ArtifactStoreError, match=r"does not exist"),
        memory_store.local_folder(uri),
    ):
        pass
    assert _publish(memory_store, {"a": b"1"}).uri == uri  # retrying completes it


def fingerprint_of(files: dict[str, bytes], type_name: str = "T") -> str:
    return _fingerprint(files, type_name)[0]


def test_memory_store_sweeps_dead_local_staging(memory_store: ArtifactStore) -> None:
    dead = Path(tempfile.gettempdir()) / f"conveyor-stage-{_dead_pid()}-x{uuid.uuid4().hex}"
    dead.mkdir()
    assert memory_store.sweep_staging() >= 1
    assert not dead.exists()
