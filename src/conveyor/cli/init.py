"""``conveyor init [DIR]``: scaffold a project (conveyor.toml and an example pipeline.py)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from conveyor.cli.errors import fail
from conveyor.cli.render import out_console

__all__ = ["SCAFFOLD", "init_command", "scaffold"]

# Target file name -> template name (in conveyor/cli/templates).
SCAFFOLD: dict[str, str] = {
    "conveyor.toml": "conveyor.toml.tmpl",
    "pipeline.py": "pipeline.py.tmpl",
}


def _template(name: str) -> str:
    return resources.files("conveyor.cli").joinpath("templates", name).read_text("utf-8")


def scaffold(directory: Path, force: bool = False) -> list[Path]:
    """Write the scaffold files into ``directory`` (created if missing).

    Returns the paths written. Raises FileExistsError naming the existing files (before
    writing anything) unless ``force``.
    """
    targets = {directory / name: template for name, template in SCAFFOLD.items()}
    existing = [path for path in targets if path.exists()]
    if existing and not force:
        raise FileExistsError(", ".join(str(p) for p in existing))
    directory.mkdir(parents=True, exist_ok=True)
    for path, template in targets.items():
        path.write_text(_template(template), encoding="utf-8")
    return list(targets)


def init_command(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="Folder to scaffold (created if missing).")
    ] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Create conveyor.toml and an example pipeline.py in DIR (default: here)."""
    try:
        written = scaffold(directory, force=force)
    except FileExistsError as exc:
        fail(f"{exc} already exists; use --force to overwrite")
    console = out_console()
    for path in written:
        console.print(f"[green]created[/] {path}")
    where = "" if directory.resolve() == Path.cwd().resolve() else f"cd {directory} && "
    console.print(f"next: [bold]{where}conveyor run[/]")
