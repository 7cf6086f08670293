"""Search spaces for ``tune``: plain data in the pipeline, checked whole before any trial.

A space is JSON, so it is a pipeline parameter and part of the step's cache key::

    {"model": {"choice": {
        "xgboost": {"flavour": "xgboost",
                    "params": {"max_depth": {"int": [2, 8]},
                               "learning_rate": {"float": [0.01, 0.3], "log": true}}},
        "rf": {"flavour": "sklearn", "class": "sklearn.ensemble.RandomForestClassifier",
               "params": {"n_estimators": {"int": [50, 300], "step": 50}}}}},
     "preprocessing": {"numeric": {"categorical": ["standard", "minmax"]}}}

``model`` is one estimator spec (``flavour``, ``class``, ``params``,
``early_stopping_rounds``, as ``train`` takes it) or ``{"choice": {name: spec}}`` over model
families; ``preprocessing`` (optional) holds keyword arguments of
:func:`conveyor.modeling.transform.fit_preprocessor` (``numeric``, ``categorical``, ``impute``,
``transformer``), or ``{"choice": {name: options | null}}``.
Every value in ``params``, in preprocessing and ``early_stopping_rounds`` is a constant or
one distribution (``docs/tuning.md`` has the details):

- ``{"int": [low, high], "step": 1, "log": false}``, ``{"float": [low, high], "log": true}``;
- ``{"categorical": [a, b, ...]}``: one of the values (str, number, bool, null);
- ``{"choice": {"rbf": {"gamma": {...}}, "linear": {}}}``: the key, plus its branch's params;
- ``{"const": value}``: a constant that is itself a dict.

:func:`parse_space` returns a :class:`SearchSpace` or raises :class:`TuningError` naming the
path at fault (``space.model.choice.xgboost.params.max_depth: low 8 > high 2``).
:meth:`SearchSpace.sample` draws a :class:`Candidate` from an Optuna trial define-by-run: a
branch's parameters are drawn only when the branch is chosen (conditional parameters). The
names Optuna sees are dotted paths without the structural keys: ``model`` (the family),
``model.xgboost.max_depth``, ``preprocessing.numeric``. This module never imports Optuna.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from conveyor.exceptions import ConveyorError, did_you_mean

__all__ = [
    "DISTRIBUTIONS",
    "Candidate",
    "EstimatorTemplate",
    "SearchSpace",
    "SuggestingTrial",
    "TuningError",
    "parse_space",
]

DISTRIBUTIONS = ("int", "float", "categorical", "choice", "const")
"""The distribution keywords of a space."""

_OPTIONS = {"int": ("step", "log"), "float": ("step", "log")}
_SPACE_KEYS = ("model", "preprocessing")
_SPEC_KEYS = ("flavour", "class", "params", "early_stopping_rounds")
_EXAMPLE = '{"model": {"flavour": "xgboost", "params": {"max_depth": {"int": [2, 8]}}}}'


class TuningError(ConveyorError):
    """A search space or tuning setting is invalid, or a study could not produce a result."""


class SuggestingTrial(Protocol):
    """What sampling needs from a trial (an ``optuna.Trial`` has it)."""

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        """Draw an integer."""

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        """Draw a float."""

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        """Draw one of ``choices``."""


@dataclass(frozen=True)
class Candidate:
    """One point of a space: what a trial trains.

    ``estimator`` is an estimator spec ``train`` accepts; ``preprocessing`` the options of
    ``fit_preprocessor`` (None: no preprocessing searched).
    """

    family: str
    estimator: dict[str, Any]
    preprocessing: dict[str, Any] | None


# -- nodes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Dist:
    """A value drawn by ``trial.suggest_<kind>(name, *args, **options)``, or a constant."""

    kind: str  # int, float, categorical; const: ``args[0]`` as it is
    name: str = ""
    args: tuple[Any, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)

    def values(self) -> list[Any] | None:
        """The values it can take; None for a range."""
        return (
            list(self.args[:1])
            if self.kind == "const"
            else (list(self.args[0]) if self.kind == "categorical" else None)
        )

    def draw(self, trial: SuggestingTrial) -> Any:
        if self.kind == "const":
            return self.args[0]
        return getattr(trial, f"suggest_{self.kind}")(self.name, *self.args, **self.options)


@dataclass(frozen=True)
class _Params:
    """Named values, some drawn; a ``choice`` entry adds its branch's params."""

    entries: tuple[tuple[str, Any], ...] = ()
    branches: tuple[tuple[str, str, dict[str, _Params]], ...] = ()  # key, name, branches

    def draw(self, trial: SuggestingTrial) -> dict[str, Any]:
        out = {key: node.draw(trial) for key, node in self.entries}
        for key, name, branches in self.branches:
            chosen = trial.suggest_categorical(name, list(branches))
            out[key] = chosen
            out.update(branches[chosen].draw(trial))
        return out

    def keys(self) -> set[str]:
        """Every key this node may produce."""
        return set(self.values())

    def values(self) -> dict[str, list[Any] | None]:
        """Every key this node may produce, with its possible values (None: a range)."""
        found: dict[str, list[Any] | None] = {key: node.values() for key, node in self.entries}
        for key, _, branches in self.branches:
            found[key] = list(branches)
            for branch in branches.values():
                for name, values in branch.values().items():
                    known = found.get(name, [])
                    found[name] = None if known is None or values is None else known + values
        return found

    def dimensions(self) -> int:
        drawn = sum(node.kind != "const" for _, node in self.entries)
        for _, _, branches in self.branches:
            drawn += 1 + sum(b.dimensions() for b in branches.values())
        return drawn


@dataclass(frozen=True)
class EstimatorTemplate:
    """An estimator spec whose params (and early stopping rounds) may be distributions."""

    path: str
    flavour: str
    cls: str | None
    params: _Params
    early_stopping_rounds: _Dist | None = None

    def draw(self, trial: SuggestingTrial) -> dict[str, Any]:
        spec: dict[str, Any] = {"flavour": self.flavour, "params": self.params.draw(trial)}
        if self.cls is not None:
            spec["class"] = self.cls
        if self.early_stopping_rounds is not None:
            spec["early_stopping_rounds"] = self.early_stopping_rounds.draw(trial)
        return spec

    def dimensions(self) -> int:
        rounds = self.early_stopping_rounds
        return self.params.dimensions() + int(rounds is not None and rounds.kind != "const")


@dataclass(frozen=True)
class SearchSpace:
    """A parsed, checked search space.

    Example:
        >>> space = parse_space({"model": {"flavour": "lightgbm",
        ...                                "params": {"num_leaves": {"int": [8, 64]}}}})
        >>> space.dimensions
        1
    """

    models: dict[str, EstimatorTemplate]  # family -> template
    choose_model: bool
    preprocessing: dict[str, _Params | None] | None  # branch -> kwargs; None: not searched
    choose_preprocessing: bool
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def dimensions(self) -> int:
        """How many values a trial draws at most (a family choice counts as one)."""
        count = int(self.choose_model) + sum(t.dimensions() for t in self.models.values())
        if self.preprocessing is not None:
            count += int(self.choose_preprocessing)
            count += sum(p.dimensions() for p in self.preprocessing.values() if p is not None)
        return count

    def sample(self, trial: SuggestingTrial) -> Candidate:
        """Draw one candidate (define-by-run: only the chosen branches' parameters)."""
        family = next(iter(self.models))
        if self.choose_model:
            family = trial.suggest_categorical("model", list(self.models))
        estimator = self.models[family].draw(trial)
        return Candidate(family, estimator, self._draw_preprocessing(trial))

    def _draw_preprocessing(self, trial: SuggestingTrial) -> dict[str, Any] | None:
        if self.preprocessing is None:
            return None
        branch = next(iter(self.preprocessing))
        if self.choose_preprocessing:
            branch = trial.suggest_categorical("preprocessing", list(self.preprocessing))
        kwargs = self.preprocessing[branch]
        return None if kwargs is None else kwargs.draw(trial)

    def preprocessing_options(self) -> Iterator[tuple[str, str, list[Any] | None]]:
        """``(path, option, values)`` of every preprocessing option the space may produce;
        ``values`` lists what it can be (None: a range)."""
        for branch, params in (self.preprocessing or {}).items():
            base = "space.preprocessing" + (
                f".choice.{branch}" if self.choose_preprocessing else ""
            )
            for key, values in sorted((params.values() if params is not None else {}).items()):
                yield f"{base}.{key}", key, values


# -- parsing ---------------------------------------------------------------------------------


def parse_space(space: Any) -> SearchSpace:
    """Parse and check a search space; TuningError names the path at fault.

    Example:
        >>> parse_space({"model": {"flavour": "xgboost", "params": {"max_depth": {"int": [8, 2]}}}})
        Traceback (most recent call last):
        TuningError: space.model.params.max_depth: low 8 > high 2
    """
    if not isinstance(space, Mapping):
        raise TuningError(f"space: a search space is a dict like {_EXAMPLE}, not {_kind(space)}")
    if not space:
        raise TuningError(
            f"space: the search space is empty; give at least 'model', e.g. {_EXAMPLE}"
        )
    for key in space:
        if key not in _SPACE_KEYS:
            hint = did_you_mean(str(key), _SPACE_KEYS)
            raise TuningError(f"space.{key}: unknown key{hint}")
    if "model" not in space:
        raise TuningError(f"space.model: missing; say which estimator(s) to tune, e.g. {_EXAMPLE}")
    models, choose_model = _parse_models(space["model"])
    preprocessing, choose_prep = None, False
    if space.get("preprocessing") is not None:
        preprocessing, choose_prep = _parse_preprocessing(space["preprocessing"])
    parsed = SearchSpace(models, choose_model, preprocessing, choose_prep, dict(space))
    if parsed.dimensions == 0:
        raise TuningError(
            "space: nothing to search, every value is fixed; make a value a distribution "
            "such as {'int': [2, 8]} or offer a 'choice' of models"
        )
    return parsed


def _parse_models(
    value: Any, path: str = "space.model"
) -> tuple[dict[str, EstimatorTemplate], bool]:
    if isinstance(value, Mapping) and "choice" in value:
        branches = _choice_branches(value, path)
        models = {
            name: _parse_estimator(spec, f"{path}.choice.{name}", f"model.{name}")
            for name, spec in branches.items()
        }
        return models, True
    template = _parse_estimator(value, path, "model")
    return {template.flavour: template}, False


def _parse_estimator(value: Any, path: str, name: str) -> EstimatorTemplate:
    if not isinstance(value, Mapping):
        raise TuningError(
            f"{path}: an estimator spec is a dict like {_EXAMPLE}, not {_kind(value)}"
        )
    for key in value:
        if key not in _SPEC_KEYS:
            raise TuningError(f"{path}.{key}: unknown key" + did_you_mean(str(key), _SPEC_KEYS))
    flavour, cls = value.get("flavour"), value.get("class")
    if not isinstance(flavour, str) or not flavour:
        raise TuningError(f"{path}.flavour: missing; name the flavour ('sklearn', 'xgboost', ...)")
    if cls is not None and not isinstance(cls, str):
        raise TuningError(f"{path}.class: a class path string, not {_kind(cls)}")
    if flavour == "sklearn" and cls is None:
        raise TuningError(
            f"{path}.class: missing; an sklearn spec names its estimator, e.g. "
            "'sklearn.ensemble.RandomForestClassifier'"
        )
    params = _parse_params(value.get("params") or {}, f"{path}.params", name)
    rounds = None
    if value.get("early_stopping_rounds") is not None:
        rounds = _parse_value(
            value["early_stopping_rounds"],
            f"{path}.early_stopping_rounds",
            f"{name}.early_stopping_rounds",
        )
        _check_rounds(rounds, f"{path}.early_stopping_rounds")
    return EstimatorTemplate(path, flavour, cls, params, rounds)


def _check_rounds(node: _Dist, path: str) -> None:
    found: Any = (0,)  # a float distribution is refused
    if node.kind in ("int", "const"):
        found = node.args[:1]  # the low bound, or the value
    elif node.kind == "categorical":
        found = node.args[0]
    if not all(_is_int(v) and v >= 1 for v in found):
        raise TuningError(f"{path}: must be a positive int or an int distribution with low >= 1")


def _parse_preprocessing(value: Any) -> tuple[dict[str, _Params | None], bool]:
    path = "space.preprocessing"
    if isinstance(value, Mapping) and "choice" in value and len(value) == 1:
        branches = _choice_branches(value, path)
        parsed = {
            branch: None
            if kwargs is None
            else _parse_params(kwargs, f"{path}.choice.{branch}", f"preprocessing.{branch}")
            for branch, kwargs in branches.items()
        }
        return parsed, True
    return {"default": _parse_params(value, path, "preprocessing")}, False


def _choice_branches(value: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    extra = [k for k in value if k != "choice"]
    if extra:
        raise TuningError(f"{path}.{extra[0]}: unexpected next to 'choice'")
    branches = value["choice"]
    if not isinstance(branches, Mapping):
        raise TuningError(f"{path}.choice: a dict of named branches, not {_kind(branches)}")
    if not branches:
        raise TuningError(f"{path}.choice: empty choice; give at least one branch")
    for key in branches:
        if not isinstance(key, str) or not key:
            raise TuningError(f"{path}.choice: branch names are non-empty strings, not {key!r}")
    return branches


def _parse_params(value: Any, path: str, name: str) -> _Params:
    if not isinstance(value, Mapping):
        raise TuningError(f"{path}: a dict of name -> value or distribution, not {_kind(value)}")
    entries: list[tuple[str, Any]] = []
    branches: list[tuple[str, str, dict[str, _Params]]] = []
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise TuningError(f"{path}: parameter names are non-empty strings, not {key!r}")
        if isinstance(item, Mapping) and "choice" in item:
            branches.append(
                (key, f"{name}.{key}", _param_branches(item, f"{path}.{key}", f"{name}.{key}"))
            )
        else:
            entries.append((key, _parse_value(item, f"{path}.{key}", f"{name}.{key}")))
    for key, _, options in branches:
        for branch, params in options.items():
            clash = sorted(params.keys() & set(value))
            if clash:
                raise TuningError(
                    f"{path}.{key}.choice.{branch}.{clash[0]}: also given next to {key!r}; "
                    "give it in one place"
                )
    return _Params(tuple(entries), tuple(branches))


def _param_branches(value: Mapping[str, Any], path: str, name: str) -> dict[str, _Params]:
    branches = _choice_branches(value, path)
    return {
        branch: _parse_params(params or {}, f"{path}.choice.{branch}", f"{name}.{branch}")
        for branch, params in branches.items()
    }


def _parse_value(value: Any, path: str, name: str) -> _Dist:
    if not isinstance(value, Mapping):
        return _Dist("const", args=(value,))
    keywords = [k for k in value if k in DISTRIBUTIONS]
    if not keywords:
        unknown = str(next(iter(value), ""))
        raise TuningError(
            f"{path}: unknown distribution keyword {unknown!r}"
            + did_you_mean(unknown, DISTRIBUTIONS)
            + "; wrap a constant dict as {'const': {...}}"
        )
    if len(keywords) > 1:
        raise TuningError(
            f"{path}: give one distribution, not both {keywords[0]!r} and {keywords[1]!r}"
        )
    keyword = keywords[0]
    allowed = _OPTIONS.get(keyword, ())
    for option in value:
        if option != keyword and option not in allowed:
            valid = ", ".join(allowed) or "none"
            raise TuningError(f"{path}.{option}: unknown option of {keyword!r} (valid: {valid})")
    if keyword == "const":
        return _Dist("const", args=(value["const"],))
    if keyword == "categorical":
        return _categorical(value["categorical"], path, name)
    if keyword == "choice":  # only reached where choices are not allowed
        raise TuningError(f"{path}: 'choice' is not allowed here; use 'categorical'")
    return _int(value, path, name) if keyword == "int" else _float(value, path, name)


def _bounds(value: Mapping[str, Any], keyword: str, path: str) -> tuple[Any, Any]:
    bounds = value[keyword]
    if not isinstance(bounds, list | tuple) or len(bounds) != 2:
        raise TuningError(f"{path}: {keyword!r} takes [low, high], not {bounds!r}")
    low, high = bounds
    for bound in (low, high):
        if isinstance(bound, bool) or not isinstance(bound, int | float):
            raise TuningError(f"{path}: bounds must be numbers, got {list(bounds)!r}")
        if not math.isfinite(bound):
            raise TuningError(f"{path}: bounds must be finite, got {list(bounds)!r}")
    if low > high:
        raise TuningError(f"{path}: low {low} > high {high}")
    log = value.get("log", False)
    if not isinstance(log, bool):
        raise TuningError(f"{path}.log: true or false, not {log!r}")
    return low, high


def _int(value: Mapping[str, Any], path: str, name: str) -> _Dist:
    low, high = _bounds(value, "int", path)
    if not (_is_int(low) and _is_int(high)):
        raise TuningError(
            f"{path}: bounds of an int distribution must be integers, got [{low}, {high}]"
        )
    step, log = value.get("step", 1), bool(value.get("log", False))
    if not _is_int(step) or step < 1:
        raise TuningError(f"{path}.step: a positive integer, not {step!r}")
    if log and low < 1:
        raise TuningError(f"{path}: a log int distribution needs low >= 1, got {low}")
    if log and step != 1:
        raise TuningError(f"{path}: 'step' and 'log' cannot be combined")
    return _Dist("int", name, (int(low), int(high)), {"step": int(step), "log": log})


def _float(value: Mapping[str, Any], path: str, name: str) -> _Dist:
    low, high = _bounds(value, "float", path)
    step, log = value.get("step"), bool(value.get("log", False))
    if step is not None and (
        isinstance(step, bool) or not isinstance(step, int | float) or step <= 0
    ):
        raise TuningError(f"{path}.step: a positive number, not {step!r}")
    if log and low <= 0:
        raise TuningError(f"{path}: a log float distribution needs low > 0, got {low}")
    if log and step is not None:
        raise TuningError(f"{path}: 'step' and 'log' cannot be combined")
    options = {"step": None if step is None else float(step), "log": log}
    return _Dist("float", name, (float(low), float(high)), options)


def _categorical(choices: Any, path: str, name: str) -> _Dist:
    if not isinstance(choices, list | tuple):
        raise TuningError(f"{path}: 'categorical' takes a list of values, not {_kind(choices)}")
    if not choices:
        raise TuningError(f"{path}: empty 'categorical'; give at least one value")
    for choice in choices:
        if choice is not None and not isinstance(choice, str | int | float | bool):
            raise TuningError(
                f"{path}: categorical values are str, number, bool or null, not {_kind(choice)} "
                "(use 'choice' for named branches)"
            )
    if len({(type(c), c) for c in choices}) != len(choices):
        raise TuningError(f"{path}: duplicate values in {list(choices)!r}")
    return _Dist("categorical", name, (list(choices),))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
