"""The Schema artifact: what we expect of a dataset, feature by feature.

Concepts follow TensorFlow Data Validation's schema (``tensorflow_metadata`` ``schema.proto``),
condensed into one readable YAML file:

==========================  ====================================================================
conveyor                    TFDV
==========================  ====================================================================
``type``                    ``Feature.type`` (INT, FLOAT, BYTES), finer: int/float/bool/string/…
``required``                ``presence.min_count >= 1``: the column must be there
``max_missing_fraction``    ``1 - presence.min_fraction``
``min`` / ``max``           ``int_domain`` / ``float_domain`` bounds
``domain``                  ``string_domain`` (inferred only up to ``domain_cap`` = 100 values,
                            as ``infer_schema(max_string_domain_size=100)``)
``max_unseen_fraction``     ``1 - distribution_constraints.min_domain_mass``
``drift`` / ``skew``        ``drift_comparator`` / ``skew_comparator`` (``infinity_norm`` or
                            ``jensen_shannon_divergence`` threshold), any method of
                            :mod:`conveyor.data.drift`
``allow_new_columns``       TFDV reports ``SCHEMA_NEW_COLUMN``; here a warning, or an error when
                            false
==========================  ====================================================================

Inference (:func:`infer_schema`) reads only statistics; validation lives in
:mod:`conveyor.data.validation`; :func:`diff_schemas` lists what changed between two schemas.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from conveyor.core.materializers import Materializer
from conveyor.data.errors import SchemaError
from conveyor.data.statistics_model import (
    DatasetStatistics,
    FeatureKind,
    FeatureStatistics,
    FeatureType,
    SplitStatistics,
)
from conveyor.exceptions import did_you_mean

__all__ = [
    "DEFAULT_DOMAIN_CAP",
    "DRIFT_METHODS",
    "SCHEMA_FILE",
    "Comparator",
    "FeatureSchema",
    "Schema",
    "SchemaChange",
    "SchemaMaterializer",
    "diff_schemas",
    "infer_schema",
    "load_schema",
    "save_schema",
]

SCHEMA_FILE = "schema.yaml"
DEFAULT_DOMAIN_CAP = 100
DRIFT_METHODS: tuple[str, ...] = ("auto", "tfdv", "psi", "js", "jensenshannon", "wasserstein")
DRIFT_METHODS += ("ks", "chisquare", "z", "linf")
"""Built-in methods of :func:`conveyor.data.drift.dataset_drift` (methods registered with
``register_drift_method`` are accepted too)."""

_HEADER = """\
# conveyor schema (format 1): what every dataset validated against it must look like.
# Per feature: type (int|float|bool|string|datetime), required (the column must exist),
# max_missing_fraction, min/max and max_out_of_range_fraction (numbers), domain and
# max_unseen_fraction (categories), drift/skew: {method, threshold} (a threshold makes
# drift an error; without one, drift over the method's default threshold is a warning),
# identifier: true (keys and ids: no range, domain or drift checks).
# Edit freely; `conveyor schema diff` shows what changed.
"""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Comparator(_Strict):
    """How to compare a feature's distribution with a reference (drift or skew).

    ``threshold`` None uses the method's default threshold and reports drift as a warning;
    a threshold set in the schema makes drift over it an error.

    Example:
        >>> Comparator(method="linf", threshold=0.1)
        Comparator(method='linf', threshold=0.1)
    """

    method: str = "auto"
    threshold: float | None = Field(default=None, ge=0)

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value in DRIFT_METHODS:
            return value
        # Only for names that are not built in: the registry imports numpy and scipy.
        from conveyor.data.drift_methods import METHODS, SELECTORS

        if value in METHODS or value in SELECTORS:
            return value
        known = [*METHODS, *SELECTORS]
        raise ValueError(f"unknown drift method {value!r}{did_you_mean(value, known)}")


class FeatureSchema(_Strict):
    """Expectations about one column.

    Example:
        >>> FeatureSchema(type="int", min=17, max=90).max_missing_fraction
        0.0
    """

    type: FeatureType
    identifier: bool = False
    required: bool = True
    max_missing_fraction: float = Field(default=0.0, ge=0, le=1)
    min: float | None = None
    max: float | None = None
    max_out_of_range_fraction: float = Field(default=0.0, ge=0, le=1)
    domain: list[str] | None = None
    max_unseen_fraction: float = Field(default=0.0, ge=0, le=1)
    drift: Comparator | None = None
    skew: Comparator | None = None

    @field_validator("domain", mode="before")
    @classmethod
    def _domain_as_text(cls, value: Any) -> Any:
        # Hand-written YAML turns `- 1` into an int: domains hold the text form of values.
        # Order carries no meaning: keep it sorted, so equal domains compare equal.
        if isinstance(value, list):
            return sorted(str(v).lower() if isinstance(v, bool) else str(v) for v in value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSchema:
        numeric = self.type in (FeatureType.INT, FeatureType.FLOAT)
        if (self.min is not None or self.max is not None) and not numeric:
            raise ValueError(f"min/max apply to int and float features, not {self.type.value}")
        if self.identifier and (self.min, self.max, self.domain) != (None, None, None):
            raise ValueError("an identifier has no min/max or domain: its values are unique")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is greater than max {self.max:g}")
        if self.domain is not None:
            duplicates = sorted({v for v in self.domain if self.domain.count(v) > 1})
            if duplicates:
                raise ValueError(f"domain repeats values {duplicates[:5]}")
        return self


class Schema(_Strict):
    """Expectations about a whole dataset: its features, label and tolerance of new columns.

    Example:
        >>> schema = Schema(label="income", features={
        ...     "age": FeatureSchema(type="int", min=17, max=90),
        ...     "income": FeatureSchema(type="string", domain=["<=50K", ">50K"])})
        >>> Schema.from_yaml(schema.to_yaml()) == schema
        True
    """

    # features come first so that the label's validator sees them (the YAML order is fixed
    # by to_yaml, not by this one)
    features: dict[str, FeatureSchema]
    format_version: Literal[1] = 1
    dataset: str | None = None
    source: str = "inferred"
    label: str | None = None
    allow_new_columns: bool = True

    @field_validator("label")
    @classmethod
    def _label_is_a_feature(cls, value: str | None, info: ValidationInfo) -> str | None:
        features = info.data.get("features")
        if value is not None and features is not None and value not in features:
            raise ValueError(
                f"label {value!r} is not one of the features{did_you_mean(value, features)}"
            )
        return value

    def to_yaml(self) -> str:
        """Readable, stable YAML: a comment header, features sorted by name, fixed key order."""
        data = _plain(self)
        return _HEADER + yaml.dump(
            data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100
        )

    @classmethod
    def from_yaml(cls, text: str, path: str | Path | None = None) -> Schema:
        """Parse and check YAML; :class:`SchemaError` names the file, line, feature and field."""
        where = str(path) if path is not None else "<schema>"
        try:
            node = yaml.compose(text, Loader=_Loader)
            data = yaml.load(text, Loader=_Loader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise SchemaError(f"{where}{line}: not valid YAML: {problem}") from exc
        if not isinstance(data, dict):
            raise SchemaError(f"{where}: a schema is a YAML mapping with 'features'")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SchemaError(_describe(exc, where, node)) from exc


def _number(value: float | None, kind: FeatureType) -> float | int | None:
    if value is not None and kind is FeatureType.INT and float(value).is_integer():
        return int(value)
    return value


def _plain(schema: Schema) -> dict[str, Any]:
    features: dict[str, Any] = {}
    for name in sorted(schema.features):
        feature = schema.features[name]
        entry = feature.model_dump(mode="json", exclude_none=True)
        for bound in ("min", "max"):
            if bound in entry:
                entry[bound] = _number(entry[bound], feature.type)
        # Defaults of checks that do not apply would only be noise in the file.
        if not feature.identifier:
            entry.pop("identifier")
        if feature.min is None and feature.max is None and not feature.max_out_of_range_fraction:
            entry.pop("max_out_of_range_fraction")
        if feature.domain is None and not feature.max_unseen_fraction:
            entry.pop("max_unseen_fraction")
        features[name] = entry
    head = schema.model_dump(mode="json", exclude={"features"})
    return {**head, "features": features}


class _Dumper(yaml.SafeDumper):
    """Readable Unicode, but line separators that PyYAML would write raw are escaped."""


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    if any(ch in text for ch in "\x85\u2028\u2029"):
        return dumper.represent_scalar("tag:yaml.org,2002:str", text, style='"')
    return dumper.represent_str(text)


_Dumper.add_representer(str, _represent_text)


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false, so a domain value `no` or `on` stays text."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest node on the path ``loc`` (pydantic's error location)."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == str(key)]
            if not match:
                break
            key_node, node = match[0]
            line = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _describe(exc: ValidationError, where: str, node: yaml.Node | None) -> str:
    """``schema.yaml:12: feature 'age', field 'max': ...`` for each error (at most 5)."""
    lines = []
    for error in exc.errors()[:5]:
        loc = tuple(error["loc"])
        line = _line_of(node, loc)
        at = f"{where}:{line}" if line else where
        parts = list(loc)
        subject = ""
        if len(parts) >= 2 and parts[0] == "features":
            subject = f"feature {parts[1]!r}"
            parts = parts[2:]
        field = ".".join(str(p) for p in parts)
        if error["type"] == "extra_forbidden":
            known = FeatureSchema.model_fields if subject and len(parts) == 1 else {}
            message = f"unknown field {field!r}{did_you_mean(str(parts[-1]), known)}"
        else:
            text = error["msg"].removeprefix("Value error, ")
            message = (f"field {field!r}: " if field else "") + text
        lines.append(f"{at}: {', '.join(p for p in (subject, message) if p)}")
    more = len(exc.errors()) - len(lines)
    return "\n".join(lines) + (f"\n... and {more} more" if more > 0 else "")


def load_schema(path: str | Path) -> Schema:
    """Read a schema YAML file; :class:`SchemaError` names the file, line, feature and field.

    Example:
        >>> schema = load_schema("schema.yaml")  # doctest: +SKIP
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaError(f"cannot read schema {file}: {exc}") from exc
    return Schema.from_yaml(text, file)


def save_schema(schema: Schema, path: str | Path) -> Path:
    """Write ``schema`` as YAML (written to a temporary name, then renamed)."""
    file = Path(path)
    tmp = file.with_name(f".{file.name}.tmp")
    tmp.write_text(schema.to_yaml(), encoding="utf-8")
    tmp.replace(file)
    return file


class SchemaMaterializer(Materializer):
    """:class:`Schema` <-> ``schema.yaml`` (artifact type ``"Schema"``)."""

    python_types = (Schema,)
    artifact_type = "Schema"

    def save(self, obj: Any, folder: Path) -> dict[str, Any]:
        schema: Schema = obj
        (folder / SCHEMA_FILE).write_text(schema.to_yaml(), encoding="utf-8")
        return {
            "features": len(schema.features),
            "label": schema.label,
            "dataset": schema.dataset,
            "source": schema.source,
        }

    def load(self, folder: Path, python_type: type) -> Any:
        return load_schema(folder / SCHEMA_FILE)


# -- inference ------------------------------------------------------------------------------


def _widest(types: Iterable[FeatureType]) -> FeatureType:
    kinds = set(types)
    if len(kinds) == 1:
        return kinds.pop()
    if kinds <= {FeatureType.INT, FeatureType.FLOAT, FeatureType.BOOL}:
        return FeatureType.FLOAT
    return FeatureType.STRING


def _range(
    stats: list[FeatureStatistics], kind: FeatureType, slack: float
) -> tuple[float | None, float | None]:
    if kind not in (FeatureType.INT, FeatureType.FLOAT):
        return None, None
    lows = [s.numeric.min for s in stats if s.numeric and s.numeric.min is not None]
    highs = [s.numeric.max for s in stats if s.numeric and s.numeric.max is not None]
    if not lows or not highs:
        return None, None
    low, high = min(lows), max(highs)
    pad = (high - low) * slack
    low, high = low - pad, high + pad
    if kind is FeatureType.INT:
        return float(math.floor(low)), float(math.ceil(high))
    return low, high


def _domain(stats: list[FeatureStatistics], cap: int) -> list[str] | None:
    """Every value seen, when the statistics list all of them and there are at most ``cap``."""
    values: set[str] = set()
    for s in stats:
        cat = s.categorical
        if s.kind is not FeatureKind.CATEGORICAL or cat is None:
            return None
        if not cat.distinct_is_exact or len(cat.top) < cat.distinct:
            return None  # top-k is cut: the domain would be incomplete
        values.update(v.value for v in cat.top)
    if len(values) > cap or not values:
        return None
    return sorted(values)


def _infer_feature(
    name: str, stats: list[FeatureStatistics], present_in_all: bool, options: _InferOptions
) -> FeatureSchema:
    kind = _widest(s.type for s in stats)
    observed_missing = max(s.missing_fraction for s in stats)
    missing = 0.0 if observed_missing == 0 else min(1.0, observed_missing + options.missing_slack)
    missing = round(missing, 6)
    presence = FeatureSchema(type=kind, required=present_in_all, max_missing_fraction=missing)
    if name in options.identifiers:
        return presence.model_copy(update={"identifier": True})
    low, high = _range(stats, kind, options.range_slack)
    domain = None if kind is FeatureType.BOOL else _domain(stats, options.domain_cap)
    return FeatureSchema(
        type=kind,
        required=present_in_all,
        max_missing_fraction=missing,
        min=low,
        max=high,
        max_out_of_range_fraction=options.max_out_of_range_fraction if low is not None else 0.0,
        domain=domain,
        max_unseen_fraction=options.max_unseen_fraction if domain is not None else 0.0,
        drift=options.drift,
        skew=options.skew,
    )


@dataclass(frozen=True)
class _InferOptions:
    identifiers: frozenset[str]
    domain_cap: int
    range_slack: float
    missing_slack: float
    max_out_of_range_fraction: float
    max_unseen_fraction: float
    drift: Comparator | None
    skew: Comparator | None


def _parts(
    statistics: DatasetStatistics | SplitStatistics, splits: Iterable[str] | None
) -> tuple[list[SplitStatistics], str | None, str | None]:
    """The splits to infer from, the dataset name and the label the statistics know."""
    if isinstance(statistics, SplitStatistics):
        label = statistics.label.column if statistics.label else None
        return [statistics], None, label
    names = list(splits) if splits is not None else list(statistics.splits)
    parts = [statistics.split(name) for name in names]
    if not parts:
        raise SchemaError("cannot infer a schema from statistics with no splits")
    return parts, statistics.dataset, statistics.label


def infer_schema(
    statistics: DatasetStatistics | SplitStatistics,
    *,
    label: str | None = None,
    identifiers: Iterable[str] = (),
    splits: Iterable[str] | None = None,
    domain_cap: int = DEFAULT_DOMAIN_CAP,
    range_slack: float = 0.1,
    missing_slack: float = 0.05,
    max_out_of_range_fraction: float = 0.001,
    max_unseen_fraction: float = 0.0,
    drift: Comparator | None = None,
    skew: Comparator | None = None,
) -> Schema:
    """Infer a schema from statistics (all splits by default, merged).

    A feature is ``required`` when every split has it; ``max_missing_fraction`` is 0 when no
    value was missing, else the worst split's fraction plus ``missing_slack``; numeric
    ranges are the observed min/max widened by ``range_slack`` x (max - min) on each side
    (integers rounded outwards); a categorical feature whose statistics list every value
    gets a domain when it has at most ``domain_cap`` values, otherwise only its type.
    ``identifiers`` (keys, ids) get only type and presence. ``drift``/``skew`` comparators
    are set on every other feature when given.

    Example:
        >>> schema = infer_schema(stats, label="income", identifiers=["id"])
        >>> schema.features["age"].min
        9.0
    """
    parts, dataset, known_label = _parts(statistics, splits)
    label = label or known_label
    columns = list(dict.fromkeys(name for part in parts for name in part.features))
    for name in [label, *identifiers]:
        if name is not None and name not in columns:
            raise SchemaError(
                f"column {name!r} is not in the statistics{did_you_mean(name, columns)}"
            )
    options = _InferOptions(
        identifiers=frozenset(identifiers),
        domain_cap=domain_cap,
        range_slack=range_slack,
        missing_slack=missing_slack,
        max_out_of_range_fraction=max_out_of_range_fraction,
        max_unseen_fraction=max_unseen_fraction,
        drift=drift,
        skew=skew,
    )
    features = {}
    for name in columns:
        stats = [part.features[name] for part in parts if name in part.features]
        features[name] = _infer_feature(name, stats, len(stats) == len(parts), options)
    return Schema(dataset=dataset, label=label, features=features)


# -- diff -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaChange:
    """One difference between two schemas.

    ``feature`` None: a schema-level field. ``field`` None: the whole feature was added or
    removed. Domain changes are reported as the values ``added`` and ``removed``.

    Example:
        >>> SchemaChange("age", "max", "changed", 90, 99).describe()
        'age.max: 90 -> 99'
    """

    feature: str | None
    field: str | None
    change: Literal["added", "removed", "changed"]
    old: Any = None
    new: Any = None

    def describe(self) -> str:
        """One line for people."""
        name = ".".join(p for p in (self.feature, self.field) if p) or "schema"
        if self.field == "domain" and self.change != "changed":
            values = self.new if self.change == "added" else self.old
            shown = ", ".join(repr(v) for v in values[:10])
            more = f", ... ({len(values) - 10} more)" if len(values) > 10 else ""
            sign = "+" if self.change == "added" else "-"
            return f"{name}: {sign}{len(values)} value(s): {shown}{more}"
        if self.change == "added":
            return f"{name}: added" + ("" if self.field is None else f" ({self.new!r})")
        if self.change == "removed":
            return f"{name}: removed" + ("" if self.field is None else f" (was {self.old!r})")
        return f"{name}: {self.old!r} -> {self.new!r}"

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {k: getattr(self, k) for k in ("feature", "field", "change", "old", "new")}


def _diff_feature(name: str, old: dict[str, Any], new: dict[str, Any]) -> list[SchemaChange]:
    changes = []
    for key in dict.fromkeys([*old, *new]):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if key == "domain" and before is not None and after is not None:
            removed = sorted(set(before) - set(after))
            added = sorted(set(after) - set(before))
            if added:
                changes.append(SchemaChange(name, key, "added", None, added))
            if removed:
                changes.append(SchemaChange(name, key, "removed", removed, None))
            continue
        change: Literal["added", "removed", "changed"] = (
            "added" if before is None else "removed" if after is None else "changed"
        )
        changes.append(SchemaChange(name, key, change, before, after))
    return changes


def diff_schemas(old: Schema, new: Schema) -> list[SchemaChange]:
    """What changed from ``old`` to ``new``: schema fields, then features by name.

    Example:
        >>> [c.describe() for c in diff_schemas(a, b)]
        ["label: 'y' -> 'income'", 'age.max: 90 -> 99', "sex: removed"]
    """
    a, b = _plain(old), _plain(new)
    changes = [
        SchemaChange(None, key, "changed", a[key], b[key])
        for key in a
        if key not in ("features", "source") and a[key] != b[key]
    ]
    fa, fb = a["features"], b["features"]
    for name in sorted({*fa, *fb}):
        if name not in fb:
            changes.append(SchemaChange(name, None, "removed", fa[name], None))
        elif name not in fa:
            changes.append(SchemaChange(name, None, "added", None, fb[name]))
        else:
            changes.extend(_diff_feature(name, fa[name], fb[name]))
    return changes
