"""Schema: model checks, YAML round trip and errors, inference from statistics, diff."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.core.materializers import artifact_type_of, load_folder, materializer_for
from conveyor.data.errors import SchemaError
from conveyor.data.schema import (
    DRIFT_METHODS,
    Comparator,
    FeatureSchema,
    Schema,
    diff_schemas,
    infer_schema,
    load_schema,
    save_schema,
)
from conveyor.data.statistics_model import (
    DatasetStatistics,
    FeatureKind,
    FeatureStatistics,
    FeatureType,
    Histogram,
    NumericStatistics,
    SplitStatistics,
    StringStatistics,
    ValueCount,
)

# -- statistics built by hand (no data needed) -----------------------------------------------


def numeric(
    name: str, low: float, high: float, *, kind: str = "int", missing: int = 0, count: int = 100
) -> FeatureStatistics:
    hist = Histogram(edges=[low, (low + high) / 2, high], counts=[count // 2, count - count // 2])
    return FeatureStatistics(
        name=name,
        type=FeatureType(kind),
        kind=FeatureKind.NUMERIC,
        count=count,
        missing=missing,
        numeric=NumericStatistics(
            mean=(low + high) / 2, std=1.0, min=low, max=high, zeros=0, histogram=hist
        ),
    )


def categorical(
    name: str, values: dict[str, int], *, distinct: int | None = None, missing: int = 0
) -> FeatureStatistics:
    top = [ValueCount(value=v, count=c) for v, c in values.items()]
    return FeatureStatistics(
        name=name,
        type=FeatureType.STRING,
        kind=FeatureKind.CATEGORICAL,
        count=sum(values.values()),
        missing=missing,
        categorical=StringStatistics(distinct=distinct or len(values), top=top),
    )


def split(name: str, *features: FeatureStatistics, rows: int = 100) -> SplitStatistics:
    return SplitStatistics(split=name, num_rows=rows, features={f.name: f for f in features})


def census_stats() -> DatasetStatistics:
    train = split(
        "train",
        numeric("age", 17, 90),
        numeric("hours", 1.5, 99.5, kind="float", missing=10),
        categorical("workclass", {"Private": 70, "State-gov": 30}),
        categorical("income", {"<=50K": 75, ">50K": 25}),
        categorical("name", {f"n{i}": 1 for i in range(20)}, distinct=5000),
    )
    evaluation = split(
        "eval",
        numeric("age", 18, 95),
        numeric("hours", 2.0, 80.0, kind="float"),
        categorical("workclass", {"Private": 60, "Never-worked": 40}),
        categorical("income", {"<=50K": 75, ">50K": 25}),
        categorical("name", {f"m{i}": 1 for i in range(20)}, distinct=5000),
    )
    return DatasetStatistics(
        dataset="census", label="income", splits={"train": train, "eval": evaluation}
    )


# -- inference -------------------------------------------------------------------------------


def test_infer_merges_splits_like_tfdv() -> None:
    schema = infer_schema(census_stats(), range_slack=0.0)
    assert schema.label == "income" and schema.dataset == "census"
    age = schema.features["age"]
    assert (age.type, age.min, age.max, age.required) == (FeatureType.INT, 17, 95, True)
    assert age.max_missing_fraction == 0.0  # never missing: required values (min_fraction 1)
    assert age.max_out_of_range_fraction == 0.001 and age.max_unseen_fraction == 0.0
    assert schema.features["workclass"].max_out_of_range_fraction == 0.0  # no range
    hours = schema.features["hours"]
    assert hours.max_missing_fraction == pytest.approx(10 / 110 + 0.05)
    assert schema.features["workclass"].domain == ["Never-worked", "Private", "State-gov"]
    assert schema.features["name"].domain is None  # top-k cut: only the type
    assert schema.features["name"].type is FeatureType.STRING


def test_infer_range_slack_rounds_integers_outwards() -> None:
    schema = infer_schema(census_stats().split("train"), range_slack=0.1)
    age = schema.features["age"]
    # span 73 -> 7.3 on each side: [9.7, 97.3] -> [9, 98] for an int feature
    assert (age.min, age.max) == (9, 98)
    hours = schema.features["hours"]
    assert hours.min == pytest.approx(1.5 - 9.8) and hours.max == pytest.approx(99.5 + 9.8)


def test_domain_cap_drops_large_domains() -> None:
    many = categorical("city", {f"c{i:03d}": 1 for i in range(101)})
    stats = split("train", many)
    assert infer_schema(stats).features["city"].domain is None
    assert len(infer_schema(stats, domain_cap=101).features["city"].domain or []) == 101


def test_column_missing_from_a_split_is_optional() -> None:
    stats = DatasetStatistics(
        splits={
            "train": split("train", numeric("a", 0, 1), numeric("b", 0, 1)),
            "eval": split("eval", numeric("a", 0, 1)),
        }
    )
    schema = infer_schema(stats)
    assert schema.features["a"].required and not schema.features["b"].required


def test_infer_sets_comparators_and_rejects_an_unknown_label() -> None:
    schema = infer_schema(census_stats(), drift=Comparator(method="psi", threshold=0.2))
    assert schema.features["age"].drift == Comparator(method="psi", threshold=0.2)
    assert schema.features["age"].skew is None
    with pytest.raises(SchemaError, match=r"column 'incme' is not in the statistics.*'income'"):
        infer_schema(census_stats(), label="incme")


def test_identifiers_get_only_type_and_presence() -> None:
    schema = infer_schema(census_stats(), identifiers=["age"], drift=Comparator())
    age = schema.features["age"]
    assert age.identifier and (age.min, age.max, age.domain, age.drift) == (None,) * 4
    assert "identifier: true" in schema.to_yaml()
    assert "identifier" not in schema.to_yaml().split("  hours:")[1]
    with pytest.raises(ValueError, match="an identifier has no min/max or domain"):
        FeatureSchema(type="int", identifier=True, max=3)
    with pytest.raises(SchemaError, match="column 'idd' is not in the statistics"):
        infer_schema(census_stats(), identifiers=["idd"])


# -- the model -------------------------------------------------------------------------------


def test_feature_checks() -> None:
    with pytest.raises(ValueError, match="min 5 is greater than max 3"):
        FeatureSchema(type="int", min=5, max=3)
    with pytest.raises(ValueError, match="min/max apply to int and float"):
        FeatureSchema(type="string", min=0)
    with pytest.raises(ValueError, match=r"unknown drift method 'kss'.*'ks'"):
        Comparator(method="kss")
    with pytest.raises(ValueError, match="label 'y' is not one of the features"):
        Schema(label="y", features={"x": FeatureSchema(type="int")})


def test_drift_methods_match_the_drift_module() -> None:
    from conveyor.data.drift_methods import METHODS, SELECTORS

    assert set(DRIFT_METHODS) == {*METHODS, *SELECTORS}


# -- YAML ------------------------------------------------------------------------------------


def test_yaml_is_readable_sorted_and_round_trips(tmp_path: Path) -> None:
    schema = infer_schema(census_stats(), skew=Comparator(method="linf", threshold=0.1))
    text = schema.to_yaml()
    assert text.startswith("# conveyor schema")
    assert text.index("  age:") < text.index("  hours:") < text.index("  workclass:")
    assert "min: 9\n" in text  # integers stay integers
    assert "max_unseen_fraction" not in text.split("  age:")[1].split("  hours:")[0]
    assert Schema.from_yaml(text) == schema
    path = save_schema(schema, tmp_path / "schema.yaml")
    assert load_schema(path) == schema
    assert path.read_text() == text  # stable: the same schema, the same bytes


def test_yaml_keeps_yes_and_no_as_text() -> None:
    text = "features:\n  answer:\n    type: string\n    domain: [yes, no, 1]\n"
    assert Schema.from_yaml(text).features["answer"].domain == ["1", "no", "yes"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ("max_missing_fraction: 0.0\n    min: 9", "max_missing_fraction: 0.0\n    mn: 9"),
            r"schema.yaml:\d+: feature 'age', unknown field 'mn' \(did you mean 'min'\?\)",
        ),
        (
            ("type: int", "type: integer"),
            r"schema.yaml:\d+: feature 'age', field 'type': Input should be 'int'",
        ),
        (
            ("method: linf", "method: l-inf"),
            r"schema.yaml:\d+: feature '\w+', field 'skew.method': unknown drift method 'l-inf'",
        ),
        (
            ("label: income", "label: incom"),
            r"schema.yaml:\d+: field 'label': label 'incom' is not one of the features "
            r"\(did you mean 'income'\?\)",
        ),
    ],
)
def test_bad_yaml_names_file_line_feature_and_field(
    tmp_path: Path, edit: tuple[str, str], expected: str
) -> None:
    text = infer_schema(census_stats(), skew=Comparator(method="linf")).to_yaml()
    assert edit[0] in text
    path = tmp_path / "schema.yaml"
    path.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(SchemaError, match=expected):
        load_schema(path)


def test_bad_yaml_points_at_the_right_line(tmp_path: Path) -> None:
    path = tmp_path / "schema.yaml"
    path.write_text("features:\n  a:\n    type: int\n  b:\n    type: int\n    max: 1.5x\n")
    with pytest.raises(SchemaError, match=r"schema.yaml:6: feature 'b', field 'max'"):
        load_schema(path)
    path.write_text("features: [\n")
    with pytest.raises(SchemaError, match=r"schema.yaml:2: not valid YAML"):
        load_schema(path)
    with pytest.raises(SchemaError, match="cannot read schema"):
        load_schema(tmp_path / "missing.yaml")


simple_names = st.text(alphabet="abcdefghij_", min_size=1, max_size=8)
feature_strategy = st.builds(
    FeatureSchema,
    type=st.sampled_from([FeatureType.STRING]),
    required=st.booleans(),
    max_missing_fraction=st.floats(0, 1),
    domain=st.none() | st.lists(st.text(min_size=0, max_size=6), unique=True, max_size=8),
    max_unseen_fraction=st.floats(0, 1),
    drift=st.none()
    | st.builds(
        Comparator, method=st.sampled_from(DRIFT_METHODS), threshold=st.none() | st.floats(0, 10)
    ),
) | st.builds(
    FeatureSchema,
    type=st.sampled_from([FeatureType.INT, FeatureType.FLOAT]),
    min=st.none() | st.integers(-1000, 0).map(float),
    max=st.none() | st.integers(1, 1000).map(float),
)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(simple_names, feature_strategy, min_size=1, max_size=5), st.booleans())
def test_yaml_round_trip_property(features: dict[str, FeatureSchema], allow: bool) -> None:
    schema = Schema(features=features, allow_new_columns=allow)
    text = schema.to_yaml()
    again = Schema.from_yaml(text)
    assert again == schema
    assert again.to_yaml() == text


# -- materializer ----------------------------------------------------------------------------


def test_materializer_writes_schema_yaml(tmp_path: Path) -> None:
    schema = infer_schema(census_stats())
    assert artifact_type_of(Schema) == "Schema"
    entry = materializer_for(Schema)
    properties = entry.get().save(schema, tmp_path)
    assert (tmp_path / "schema.yaml").read_text() == schema.to_yaml()
    assert properties == {
        "features": 5,
        "label": "income",
        "dataset": "census",
        "source": "inferred",
    }
    assert load_folder(entry, tmp_path, Schema, "Schema") == schema


# -- diff ------------------------------------------------------------------------------------


def test_diff_lists_changes_feature_by_feature() -> None:
    old = infer_schema(census_stats(), range_slack=0.0)
    new = old.model_copy(deep=True)
    new.features["age"].max = 99
    new.features["workclass"].domain = ["Private", "Self-emp"]
    del new.features["name"]
    new.features["country"] = FeatureSchema(type="string", required=False)
    new.allow_new_columns = False
    lines = [c.describe() for c in diff_schemas(old, new)]
    assert lines == [
        "allow_new_columns: True -> False",
        "age.max: 95 -> 99",
        "country: added",
        "name: removed",
        "workclass.domain: +1 value(s): 'Self-emp'",
        "workclass.domain: -2 value(s): 'Never-worked', 'State-gov'",
    ]
    assert diff_schemas(old, old) == []
    change = diff_schemas(old, new)[1].to_dict()
    assert change == {"feature": "age", "field": "max", "change": "changed", "old": 95, "new": 99}
