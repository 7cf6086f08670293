"""Atomic publishing across processes: killed writers leave no half artifact, and concurrent
writers of the same content both succeed with one stored copy."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conveyor.store import ArtifactStore
from conveyor.store.artifact_store import MARKER_NAME

pytestmark = pytest.mark.slow


def _start(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _published(root: Path) -> list[Path]:
    objects = root / "objects"
    return sorted(objects.glob("*/*")) if objects.exists() else []


_WRITE_FOREVER = """
    import sys
    from conveyor.store import ArtifactStore

    store = ArtifactStore.open(sys.argv[1])
    with store.staging() as folder:
        print(folder, flush=True)
        with open(folder / "big.bin", "wb") as out:
            while True:  # a payload far bigger than the test will wait for
                out.write(b"x" * (1 << 20))
                out.flush()
"""


def test_writer_killed_while_staging_leaves_nothing_and_is_swept(tmp_path: Path) -> None:
    root = tmp_path / "arts"
    proc = _start(_WRITE_FOREVER, str(root))
    assert proc.stdout is not None
    staging = Path(proc.stdout.readline().strip())
    deadline = time.monotonic() + 30
    while not (staging / "big.bin").exists() or (staging / "big.bin").stat().st_size < 4 << 20:
        assert time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.01)
    _kill(proc)
    assert staging.is_dir() and staging.parent == root / ".tmp"
    assert _published(root) == []
    store = ArtifactStore.open(str(root))
    assert store.sweep_staging() == 1
    assert not staging.exists()
    assert list((root / ".tmp").iterdir()) == []


_PUBLISH_IN_A_LOOP = """
    import os, sys
    from conveyor.store import ArtifactStore

    store = ArtifactStore.open(sys.argv[1])
    for i in range(10_000):
        with store.staging() as folder:
            (folder / "part").mkdir()
            (folder / "part" / "big.bin").write_bytes(os.urandom(1 << 20) + str(i).encode())
            (folder / "meta.json").write_text('{"i": %d}' % i)
            stored = store.publish(folder, "Blob")
        print(stored.uri, flush=True)
"""


def test_writer_killed_at_any_moment_leaves_only_complete_artifacts(tmp_path: Path) -> None:
    root = tmp_path / "arts"
    proc = _start(_PUBLISH_IN_A_LOOP, str(root))
    assert proc.stdout is not None
    for _ in range(5):  # let it publish some, then kill it mid-way through another
        assert proc.stdout.readline(), proc.stderr.read() if proc.stderr else ""
    time.sleep(0.013)
    _kill(proc)
    store = ArtifactStore.open(str(root))
    published = _published(root)
    assert len(published) >= 5
    for folder in published:
        assert store.exists(str(folder)), f"half-published artifact {folder}"
        assert store.verify(str(folder)).sha256 == folder.name
        marker = json.loads((folder / MARKER_NAME).read_text())
        assert marker["files"] == ["meta.json", "part/big.bin"]
    store.sweep_staging()
    assert list((root / ".tmp").iterdir()) == []


_PUBLISH_SAME_CONTENT = """
    import sys, time
    from pathlib import Path
    from conveyor.store import ArtifactStore

    store = ArtifactStore.open(sys.argv[1])
    go = Path(sys.argv[2])
    with store.staging() as folder:
        payload = bytes(range(256)) * (32 * 1024)  # 8 MiB, identical in both writers
        (folder / "data.bin").write_bytes(payload)
        print("ready", flush=True)
        while not go.exists():
            time.sleep(0.001)
        stored = store.publish(folder, "Blob")
    print(stored.uri, stored.sha256, flush=True)
"""


@pytest.mark.parametrize("round_", range(3))
def test_two_writers_of_the_same_content_both_succeed_with_one_copy(
    tmp_path: Path, round_: int
) -> None:
    root = tmp_path / "arts"
    go = tmp_path / "go"
    writers = [_start(_PUBLISH_SAME_CONTENT, str(root), str(go)) for _ in range(2)]
    for proc in writers:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    go.touch()
    results = []
    for proc in writers:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(out.split())
    assert results[0] == results[1]
    uri, sha = results[0]
    assert _published(root) == [Path(uri)]
    store = ArtifactStore.open(str(root))
    assert store.verify(uri).sha256 == sha
    assert list((root / ".tmp").iterdir()) == []
