"""Where conveyor keeps things, resolved in one place.

Order: explicit argument (CLI flag) > environment (``CONVEYOR_*``) > ``conveyor.toml`` (the
nearest one in the current directory or its parents) > defaults (``.conveyor/`` in the
current directory: SQLite metadata and a local artifact folder).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.exceptions import ConfigError

__all__ = ["CONFIG_FILE", "Settings", "find_config_file", "load_settings"]

CONFIG_FILE = "conveyor.toml"


@dataclass(frozen=True)
class Settings:
    """Resolved locations and defaults for one conveyor process.

    Attributes:
        home: folder for the embedded stores and logs.
        metadata_url: SQLAlchemy URL of the metadata database.
        artifact_url: fsspec URL or local path of the artifact store.
        max_workers: default parallelism of the local runner.
        config_file: the conveyor.toml that was read, if any.
        extra: the whole parsed conveyor.toml, for later layers (e.g. ``[ct]``).
    """

    home: Path
    metadata_url: str
    artifact_url: str
    max_workers: int
    config_file: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def logs_dir(self) -> Path:
        """Folder where per-step logs are written."""
        return self.home / "logs"


def find_config_file(start: Path | None = None) -> Path | None:
    """Return the nearest ``conveyor.toml`` at or above ``start`` (default: cwd)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_FILE
        if candidate.is_file():
            return candidate
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc


def load_settings(
    home: str | Path | None = None,
    metadata_url: str | None = None,
    artifact_url: str | None = None,
    max_workers: int | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Resolve settings from arguments, environment, conveyor.toml and defaults.

    Example:
        >>> s = load_settings(home="/tmp/ch")
        >>> s.metadata_url
        'sqlite:////tmp/ch/metadata.db'
    """
    base = (cwd or Path.cwd()).resolve()
    config_file = find_config_file(base)
    data = _read_toml(config_file) if config_file else {}
    section = data.get("conveyor", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{config_file}: [conveyor] must be a table")
    toml_dir = config_file.parent if config_file else base

    def pick(arg: Any, env: str, key: str) -> Any:
        if arg is not None:
            return arg
        if os.environ.get(env):
            return os.environ[env]
        return section.get(key)

    raw_home = pick(home, "CONVEYOR_HOME", "home")
    if raw_home is None:
        resolved_home = base / ".conveyor"
    else:
        candidate = Path(str(raw_home)).expanduser()
        anchor = toml_dir if home is None and not os.environ.get("CONVEYOR_HOME") else base
        resolved_home = candidate if candidate.is_absolute() else (anchor / candidate)
    resolved_home = resolved_home.resolve()

    meta = pick(metadata_url, "CONVEYOR_METADATA_URL", "metadata_url")
    arts = pick(artifact_url, "CONVEYOR_ARTIFACT_URL", "artifact_url")
    from_toml = artifact_url is None and not os.environ.get("CONVEYOR_ARTIFACT_URL")
    if arts and from_toml and "://" not in str(arts) and not Path(str(arts)).is_absolute():
        arts = str((toml_dir / str(arts)).resolve())  # relative to conveyor.toml's folder
    workers = pick(max_workers, "CONVEYOR_MAX_WORKERS", "max_workers")
    try:
        resolved_workers = int(workers) if workers is not None else (os.cpu_count() or 1)
    except ValueError as exc:
        raise ConfigError(f"max_workers must be a whole number, got {workers!r}") from exc
    if resolved_workers < 1:
        raise ConfigError(f"max_workers must be at least 1, got {resolved_workers}")
    return Settings(
        home=resolved_home,
        metadata_url=str(meta) if meta else f"sqlite:///{resolved_home / 'metadata.db'}",
        artifact_url=str(arts) if arts else str(resolved_home / "artifacts"),
        max_workers=resolved_workers,
        config_file=config_file,
        extra=data,
    )
