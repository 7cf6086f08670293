"""What a model was built with: Python, platform, the packages that matter, the git commit.

Recorded in every bundle's manifest so a model can answer "which code and libraries made
me?" and a loader can warn when it runs with different ones. Package versions come from the
installed distributions' metadata (nothing is imported); the git commit and dirty flag come
from read-only git commands run in the current directory, when it is inside a repository.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

__all__ = ["PACKAGES", "capture_environment", "git_state", "package_versions"]

PACKAGES = ("numpy", "pandas", "scikit-learn", "skops", "xgboost", "lightgbm", "conveyor-ml")
"""Distributions whose versions decide whether a bundle loads and predicts the same."""

_BUILDS = {"xgboost": ("xgboost", "xgboost-cpu")}
"""Other distributions that install the same import package (recorded under the first name)."""

_GIT_TIMEOUT_S = 10.0


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed version of each distribution in ``names``; missing ones are left out.

    Example:
        >>> package_versions(("numpy",))
        {'numpy': '2.4.6'}
    """
    found: dict[str, str] = {}
    for name in names:
        for distribution in _BUILDS.get(name, (name,)):
            try:
                found[name] = version(distribution)
                break
            except PackageNotFoundError:
                continue
    return found


def _git(args: list[str], cwd: Path) -> str | None:
    # --no-optional-locks: `git status` must not refresh (write) the index of the user's repo.
    command = ["git", "--no-optional-locks", *args]
    try:
        done = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=_GIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(cwd: str | Path | None = None) -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` of the repository around ``cwd``, else None.

    Dirty means tracked files are modified or untracked files exist.

    Example:
        >>> git_state("/work/project")
        {'commit': '64719ef...', 'dirty': True}
    """
    folder = Path(cwd) if cwd is not None else Path.cwd()
    commit = _git(["rev-parse", "HEAD"], folder)
    if not commit:
        return None
    status = _git(["status", "--porcelain"], folder)
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def capture_environment(cwd: str | Path | None = None) -> dict[str, Any]:
    """Python version, platform, package versions and git state, as JSON.

    Example:
        >>> env = capture_environment()
        >>> sorted(env)
        ['git', 'packages', 'platform', 'python', 'python_implementation']
    """
    return {
        "python": platform.python_version(),
        "python_implementation": sys.implementation.name,
        "platform": platform.platform(),
        "packages": package_versions(),
        "git": git_state(cwd),
    }
