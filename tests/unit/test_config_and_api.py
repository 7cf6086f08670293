"""Settings resolution and the public API surface."""

from __future__ import annotations

from pathlib import Path

import pytest

import conveyor
from conveyor.config import load_settings
from conveyor.exceptions import ConfigError


def test_defaults_live_in_dot_conveyor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CONVEYOR_HOME", "CONVEYOR_METADATA_URL", "CONVEYOR_ARTIFACT_URL"):
        monkeypatch.delenv(var, raising=False)
    s = load_settings(cwd=tmp_path)
    assert s.home == (tmp_path / ".conveyor").resolve()
    assert s.metadata_url == f"sqlite:///{s.home / 'metadata.db'}"
    assert s.artifact_url == str(s.home / "artifacts")


def test_flag_beats_environment_beats_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "conveyor.toml").write_text(
        '[conveyor]\nhome = "from_toml"\nartifact_url = "arts"\nmax_workers = 3\n'
    )
    sub = tmp_path / "sub"
    sub.mkdir()
    monkeypatch.delenv("CONVEYOR_HOME", raising=False)
    monkeypatch.delenv("CONVEYOR_ARTIFACT_URL", raising=False)
    monkeypatch.delenv("CONVEYOR_MAX_WORKERS", raising=False)
    s = load_settings(cwd=sub)
    assert s.home == (tmp_path / "from_toml").resolve()
    assert s.artifact_url == str((tmp_path / "arts").resolve())
    assert s.max_workers == 3
    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "from_env"))
    assert load_settings(cwd=sub).home == (tmp_path / "from_env").resolve()
    assert load_settings(home=tmp_path / "flag", cwd=sub).home == (tmp_path / "flag").resolve()


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text("[conveyor\n")
    with pytest.raises(ConfigError, match=r"conveyor\.toml: invalid TOML"):
        load_settings(cwd=tmp_path)


def test_bad_max_workers_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_MAX_WORKERS", "lots")
    with pytest.raises(ConfigError, match=r"max_workers must be a whole number, got 'lots'"):
        load_settings(cwd=tmp_path)


def test_public_api_is_exactly_what_is_documented() -> None:
    assert sorted(conveyor.__all__) == sorted(
        [
            "Artifact", "Component", "ConveyorError", "Dataset", "File", "Folder",
            "Materializer", "Metrics", "Model", "Pipeline", "StepContext", "__version__",
            "after", "component", "current_step", "pipeline", "register_materializer", "run",
        ]
    )  # fmt: skip
    for name in conveyor.__all__:
        assert getattr(conveyor, name) is not None
