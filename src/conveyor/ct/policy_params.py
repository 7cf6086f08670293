"""Checking a policy's run parameters against the pipeline they are for.

Parameters are checked without tracing the pipeline: each name must be a parameter of the
``@pipeline`` function, each value must fit its type (pydantic, as ``conveyor run`` does), and a
trigger's parameters together with its pipeline's defaults must cover every parameter that has
no default in the function.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from conveyor.core.pipeline import Pipeline
from conveyor.ct.policy_reader import PolicyReader
from conveyor.ct.toml_lines import KeyPath
from conveyor.exceptions import ParameterError, did_you_mean

__all__ = ["check_complete", "check_params"]


def check_params(
    reader: PolicyReader,
    pipeline: Pipeline,
    params: Mapping[str, Any],
    path: KeyPath,
    where: str,
) -> bool:
    """Record unknown names and ill-typed values of ``params``; True when all are fine."""
    good = True
    for key, value in params.items():
        spec = pipeline.specs.get(key)
        if spec is None:
            reader.problem(
                (*path, key),
                where,
                f"pipeline {pipeline.name!r} has no parameter {key!r}"
                + did_you_mean(key, pipeline.specs),
            )
            good = False
            continue
        try:
            spec.validate(value, f"pipeline {pipeline.name!r}")
        except ParameterError as exc:
            reader.problem((*path, key), where, str(exc))
            good = False
    return good


def check_complete(
    reader: PolicyReader,
    pipeline: Pipeline,
    given: Iterable[str],
    path: KeyPath,
    where: str,
) -> None:
    """Record each parameter without a default that ``given`` does not cover."""
    covered = set(given)
    for name, spec in pipeline.specs.items():
        if spec.required and name not in covered:
            reader.problem(
                path,
                where,
                f"pipeline {pipeline.name!r} needs parameter {name!r}, which has no default; "
                "set it in the pipeline's params or the trigger's",
            )
