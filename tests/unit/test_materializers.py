"""Materializer registry, built-in and ML materializers, handles, and save/load round trips."""

from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from conveyor.core import materializers
from conveyor.core.artifacts import (
    Artifact,
    Dataset,
    File,
    Folder,
    HandleMaterializer,
    JsonMaterializer,
    Metrics,
    Model,
    canonical_json,
)
from conveyor.core.materializers import (
    Materializer,
    artifact_type_of,
    can_load,
    load_artifact,
    materializer_for,
    register_materializer,
    save_artifact,
)
from conveyor.exceptions import MaterializerError
from conveyor.materializers.sklearn import trusted_types
from conveyor.store import ArtifactStore


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """User registrations made by a test disappear after it."""
    monkeypatch.setattr(materializers, "_REGISTRY", materializers._REGISTRY.copy())


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore.open(str(tmp_path / "arts"), durable=False)


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> ArtifactStore:
    return ArtifactStore.open(str(tmp_path_factory.mktemp("shared")), durable=False)


@pytest.fixture
def memory_store() -> Iterator[ArtifactStore]:
    url = f"memory://mat-{uuid.uuid4().hex}"
    yield ArtifactStore.open(url)
    fs, path = fsspec.core.url_to_fs(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def round_trip(store: ArtifactStore, obj: Any, save_as: Any, load_as: Any = None) -> Any:
    stored, type_name, props = save_artifact(store, obj, save_as)
    return load_artifact(
        store, stored.uri, type_name, stored.sha256, props, save_as if load_as is None else load_as
    )


class Unknown:
    pass


class Config(dict):  # type: ignore[type-arg]
    pass


# -- registry resolution -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tp", "artifact_type"),
    [
        (dict, "JSON"),
        (list[int], "JSON"),
        (bool, "JSON"),
        (None, "JSON"),
        (Config, "JSON"),  # via its MRO
        (Metrics, "Metrics"),
        (Path, "Folder"),
        (Artifact, "Artifact"),
        (Dataset, "Dataset"),
        (Annotated[Dataset, "training data"], "Dataset"),
        (Optional[Model], "Model"),  # noqa: UP045  (the typing spelling is what we test)
        (File | None, "File"),
        (Folder, "Folder"),
        (pd.DataFrame, "Dataset"),
        (pa.Table, "Dataset"),
        (np.ndarray, "Array"),
        (LogisticRegression, "Model"),  # a subclass of the registered BaseEstimator
        ("pandas.DataFrame", "Dataset"),
    ],
)
def test_artifact_type_of(tp: Any, artifact_type: str) -> None:
    assert artifact_type_of(tp) == artifact_type


def test_dataframe_subclass_resolves_through_its_mro() -> None:
    class MyFrame(pd.DataFrame):
        pass

    assert materializer_for(MyFrame).name == "conveyor.materializers.pandas:PandasMaterializer"


def test_unknown_type_names_it_and_lists_known_ones() -> None:
    with pytest.raises(
        MaterializerError,
        match=r"no materializer for type '.*Unknown'; register one with "
        r"conveyor\.register_materializer \(known: .*dict",
    ):
        materializer_for(Unknown)


def test_union_of_two_types_is_ambiguous() -> None:
    with pytest.raises(MaterializerError, match=r"union type .* annotate a single type"):
        materializer_for(dict | list)


def test_any_is_not_a_class() -> None:
    with pytest.raises(MaterializerError, match=r"not a class"):
        materializer_for(Any)


def test_resolving_types_imports_nothing_from_ml_libraries() -> None:
    code = textwrap.dedent(
        """
        import sys
        from conveyor.core.materializers import artifact_type_of, can_load
        from conveyor.core.artifacts import Dataset
        import conveyor.store.artifact_store
        assert artifact_type_of(dict) == "JSON" and can_load(Dataset, "Dataset")
        try:
            artifact_type_of(object)
        except Exception:
            pass
        loaded = {"pandas", "pyarrow", "numpy", "sklearn", "skops"} & set(sys.modules)
        assert not loaded, loaded
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class MyDictMaterializer(Materializer):
    python_types = (dict,)
    artifact_type = "MyDict"

    def save(self, obj: Any, folder: Path) -> dict[str, Any]:
        (folder / "d.txt").write_text(repr(sorted(obj.items())))
        return {"mine": True}

    def load(self, folder: Path, python_type: type) -> Any:
        return {"loaded": (folder / "d.txt").read_text()}


def test_user_registration_beats_the_builtin_for_the_same_class(store: ArtifactStore) -> None:
    register_materializer(MyDictMaterializer)
    assert artifact_type_of(dict) == "MyDict"
    assert artifact_type_of(Config) == "MyDict"
    assert artifact_type_of(list) == "JSON"
    _, type_name, props = save_artifact(store, {"a": 1}, dict)
    assert (type_name, props) == ("MyDict", {"mine": True})


def test_nearest_class_in_the_mro_beats_a_later_user_registration() -> None:
    register_materializer(MyDictMaterializer, python_types=(object,), artifact_type="Any")
    assert artifact_type_of(dict) == "JSON"
    assert artifact_type_of(Unknown) == "Any"


def test_lazy_registration_imports_on_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"lazy_mat_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            """
            from conveyor.core.materializers import Materializer

            class ThingMaterializer(Materializer):
                python_types = ("somelib.Thing",)
                artifact_type = "Thing"

                def save(self, obj, folder):
                    return {}

                def load(self, folder, python_type):
                    return python_type()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    register_materializer(
        f"{module}:ThingMaterializer", python_types=("somelib.Thing",), artifact_type="Thing"
    )
    thing = type("Thing", (), {"__module__": "somelib"})
    entry = materializer_for(thing)
    assert entry.artifact_type == "Thing"
    assert module not in sys.modules
    assert type(entry.get()).__name__ == "ThingMaterializer"
    assert entry.get() is entry.get()  # instantiated once
    assert module in sys.modules


def test_lazy_registration_of_a_missing_module_fails_on_use() -> None:
    register_materializer("no_such_mod_xyz:M", python_types=("x.Y",), artifact_type="Y")
    entry = materializer_for(type("Y", (), {"__module__": "x"}))
    with pytest.raises(MaterializerError, match=r"cannot import materializer no_such_mod_xyz:M"):
        entry.get()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("just_a_module",), "must be 'module:Class'"),
        (("m:C",), "names no python_types"),
        (("m:C", ("x.Y",)), "names no artifact_type"),
        (("m:C", ("Y",), "Y"), "must be a class or 'module.Class'"),
        ((dict,), "is not a Materializer subclass"),
    ],
)
def test_register_materializer_validates(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(MaterializerError, match=message):
        register_materializer(*args)


@pytest.mark.parametrize(
    ("tp", "artifact_type", "expected"),
    [
        (Artifact, "Model", True),
        (Artifact, "Whatever", True),
        (Dataset, "Dataset", True),
        (Dataset, "Model", False),
        (dict, "Metrics", True),
        (list, "Metrics", False),
        (Metrics, "JSON", False),
        (Path, "File", True),
        (Path, "Folder", True),
        (File, "Folder", False),
        (pd.DataFrame, "Dataset", True),
        (pa.Table, "Dataset", True),
        (np.ndarray, "Dataset", False),
        (BaseEstimator, "Model", True),
    ],
)
def test_can_load(tp: Any, artifact_type: str, expected: bool) -> None:
    assert can_load(tp, artifact_type) is expected


# -- JSON ----------------------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=80, deadline=None)
@given(_json)
def test_json_round_trip(shared_store: ArtifactStore, value: Any) -> None:
    loaded = round_trip(shared_store, value, type(value))
    assert loaded == value
    assert type(loaded) is type(value)


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.integers(), min_size=2, max_size=6))
def test_json_is_canonical(shared_store: ArtifactStore, value: dict[str, int]) -> None:
    reordered = dict(reversed(list(value.items())))
    first, _, _ = save_artifact(shared_store, value, dict)
    second, _, _ = save_artifact(shared_store, reordered, dict)
    assert first.sha256 == second.sha256


def test_json_payload_is_sorted_utf8(store: ArtifactStore) -> None:
    stored, type_name, props = save_artifact(store, {"b": "é", "a": [1, 2.5]}, dict)
    assert (Path(stored.uri) / "data.json").read_bytes() == '{"a":[1,2.5],"b":"é"}'.encode()
    assert (type_name, props) == ("JSON", {"json_type": "dict"})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": [1, float("nan")]}, r"value at \$\.a\[1\] is nan; JSON allows finite numbers"),
        ({"a": {1: "x"}}, r"key 1 at \$\.a is a int; JSON keys are strings"),
        ({"odd key": {"x": object()}}, r"value at \$\['odd key'\]\.x is a object, which JSON"),
        ([Unknown()], r"value at \$\[0\] is a .*Unknown, which JSON cannot hold"),
    ],
)
def test_json_errors_name_the_key_path(store: ArtifactStore, value: Any, message: str) -> None:
    with pytest.raises(MaterializerError, match=message):
        save_artifact(store, value, type(value))
    assert not (Path(store.url) / "objects").exists()


def test_json_load_checks_and_coerces_the_type(store: ArtifactStore) -> None:
    assert round_trip(store, 3, int, float) == 3.0
    assert type(round_trip(store, 3, int, float)) is float
    assert isinstance(round_trip(store, {"a": 1}, dict, Config), Config)
    with pytest.raises(MaterializerError, match=r"holds a list, not a dict"):
        round_trip(store, [1], list, dict)


def test_declared_type_must_match_the_value(store: ArtifactStore) -> None:
    with pytest.raises(
        MaterializerError, match=r"value is a list, but the output is declared dict"
    ):
        save_artifact(store, [1], dict)


def test_canonical_json_example() -> None:
    assert canonical_json({"b": 1, "a": [1.5, None]}) == b'{"a":[1.5,null],"b":1}'


# -- Metrics -------------------------------------------------------------------------------


def test_metrics_round_trip_and_properties(store: ArtifactStore) -> None:
    metrics = Metrics(accuracy=0.9, count=3, f1=np.float32(0.5))
    stored, type_name, props = save_artifact(store, metrics, Metrics)
    assert type_name == "Metrics"
    assert props == {"accuracy": 0.9, "count": 3, "f1": 0.5}
    loaded = load_artifact(store, stored.uri, type_name, stored.sha256, props, Metrics)
    assert isinstance(loaded, Metrics) and loaded == props
    as_dict = load_artifact(store, stored.uri, type_name, stored.sha256, props, dict)
    assert as_dict == props


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"loss": math.inf}, "metric 'loss' is inf; metrics must be finite"),
        ({"auc": float("nan")}, "metric 'auc' is nan"),
        ({"name": "x"}, "metric 'name' is 'x', not a number"),
        ({"ok": True}, "metric 'ok' is True, not a number"),
    ],
)
def test_metrics_must_be_finite_numbers(
    store: ArtifactStore, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(MaterializerError, match=message):
        save_artifact(store, Metrics(values), Metrics)


# -- pathlib.Path --------------------------------------------------------------------------


def test_path_to_a_file_is_a_file_artifact(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "report.html"
    source.write_text("<p>hi</p>")
    stored, type_name, props = save_artifact(store, source, Path)
    assert (type_name, props) == ("File", {"name": "report.html", "num_files": 1})
    loaded = load_artifact(store, stored.uri, type_name, stored.sha256, props, Path)
    assert loaded.name == "report.html" and loaded.read_text() == "<p>hi</p>"


def test_path_to_a_folder_is_a_folder_artifact(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "plots"
    (source / "sub").mkdir(parents=True)
    (source / "a.png").write_bytes(b"png")
    (source / "sub" / "b.png").write_bytes(b"png2")
    stored, type_name, props = save_artifact(store, source, Path)
    assert type_name == "Folder" and props["num_files"] == 2
    loaded = load_artifact(store, stored.uri, type_name, stored.sha256, props, Path)
    assert (loaded / "sub" / "b.png").read_bytes() == b"png2"


def test_missing_path_is_refused(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(MaterializerError, match=r"no such file or folder"):
        save_artifact(store, tmp_path / "nope", Path)


# -- handles -------------------------------------------------------------------------------


def _write_parquet(path: Path, frame: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def test_file_handle_round_trip_fills_uri_sha_and_properties(
    store: ArtifactStore, tmp_path: Path
) -> None:
    source = tmp_path / "notes.txt"
    source.write_text("hello")
    stored, type_name, props = save_artifact(store, File.from_path(source, lang="en"), File)
    assert (type_name, props) == ("File", {"lang": "en", "num_files": 1})
    handle = load_artifact(store, stored.uri, type_name, stored.sha256, props, File)
    assert isinstance(handle, File)
    assert (handle.uri, handle.sha256, handle.type_name) == (stored.uri, stored.sha256, "File")
    assert handle.properties == props and handle.stored
    assert handle.file.name == "notes.txt" and handle.file.read_text() == "hello"
    assert handle.files() == [handle.file]


def test_from_path_copies_and_leaves_the_source_alone(store: ArtifactStore) -> None:
    source = Path(store.url) / "work" / "big.bin"
    source.parent.mkdir(parents=True)
    source.write_bytes(b"x" * 1000)
    mode = source.stat().st_mode
    stored, _, _ = save_artifact(store, File.from_path(source), File)
    assert not os.path.samefile(source, Path(stored.uri) / "big.bin")
    assert source.stat().st_mode == mode
    source.write_bytes(b"changed")
    assert (Path(stored.uri) / "big.bin").read_bytes() == b"x" * 1000


def test_any_artifact_loads_as_the_specific_handle(store: ArtifactStore) -> None:
    stored, type_name, props = save_artifact(store, pd.DataFrame({"a": [1]}), pd.DataFrame)
    handle = load_artifact(store, stored.uri, type_name, stored.sha256, props, Artifact)
    assert isinstance(handle, Dataset) and handle.type_name == "Dataset"
    assert handle.to_pandas()["a"].tolist() == [1]


def test_handle_refuses_other_artifact_types(store: ArtifactStore) -> None:
    stored, type_name, props = save_artifact(store, {"a": 1}, dict)
    with pytest.raises(MaterializerError, match=r"cannot load 'JSON' artifact .* as .*Dataset"):
        load_artifact(store, stored.uri, type_name, stored.sha256, props, Dataset)


def test_generic_artifact_handle_keeps_its_own_type(store: ArtifactStore, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.json").write_text("{}")
    _, type_name, _ = save_artifact(store, Artifact.from_path(bundle), Artifact)
    assert type_name == "Artifact"
    _, type_name, _ = save_artifact(store, Model.from_path(bundle), Artifact)
    assert type_name == "Model"


def test_passing_a_loaded_handle_through_stores_the_same_content(store: ArtifactStore) -> None:
    stored, type_name, props = save_artifact(store, pd.DataFrame({"a": [1, 2]}), pd.DataFrame)
    handle = load_artifact(store, stored.uri, type_name, stored.sha256, props, Dataset)
    again, again_type, again_props = save_artifact(store, handle, Dataset)
    assert again == stored and again_type == "Dataset"
    assert again_props["num_rows"] == 2  # carried over from the original properties


@pytest.mark.parametrize(
    ("handle", "make", "message"),
    [
        (File, lambda p: p, "File path .* is not a file"),
        (Folder, lambda p: p / "x.parquet", "Folder path .* is not a folder"),
        (Dataset, lambda p: p / "notes.txt", "Dataset file .* is not a .parquet file"),
        (Dataset, lambda p: p / "empty", "Dataset folder .* holds no .parquet files"),
        (Model, lambda p: p / "missing", "Model path .* does not exist"),
    ],
)
def test_from_path_validates(
    tmp_path: Path, handle: type[Artifact], make: Any, message: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    _write_parquet(tmp_path / "x.parquet", pd.DataFrame({"a": [1]}))
    with pytest.raises(MaterializerError, match=message):
        handle.from_path(make(tmp_path))


def test_from_path_properties_must_be_json(tmp_path: Path) -> None:
    with pytest.raises(MaterializerError, match=r"properties of .*: value at \$\.when is a"):
        Folder.from_path(tmp_path, when=object())


def test_dataset_from_a_folder_of_parts(store: ArtifactStore, tmp_path: Path) -> None:
    parts = tmp_path / "parts"
    _write_parquet(parts / "part-0.parquet", pd.DataFrame({"a": [1, 2]}))
    _write_parquet(parts / "part-1.parquet", pd.DataFrame({"a": [3], "b": ["x"]}))
    unstored = Dataset.from_path(parts)
    assert unstored.to_pandas()["a"].tolist() == [1, 2, 3]
    stored, type_name, props = save_artifact(store, unstored, Dataset)
    handle = load_artifact(store, stored.uri, type_name, stored.sha256, props, Dataset)
    assert [p.name for p in handle.parquet_files()] == ["part-0.parquet", "part-1.parquet"]
    frame = handle.to_pandas()
    assert frame["a"].tolist() == [1, 2, 3]
    assert frame["b"].isna().tolist() == [True, True, False]
    assert handle.to_arrow().num_rows == 3
    loaded = load_artifact(store, stored.uri, type_name, stored.sha256, props, pa.Table)
    assert loaded.num_rows == 3


def test_dataset_with_hive_partitions(tmp_path: Path) -> None:
    root = tmp_path / "by_year"
    _write_parquet(root / "year=2024" / "p.parquet", pd.DataFrame({"v": [1]}))
    _write_parquet(root / "year=2025" / "p.parquet", pd.DataFrame({"v": [2]}))
    frame = Dataset.from_path(root).to_pandas().sort_values("v")
    assert frame["year"].tolist() == [2024, 2025]


def test_dataset_from_a_single_parquet_file(store: ArtifactStore, tmp_path: Path) -> None:
    source = _write_parquet(tmp_path / "train.parquet", pd.DataFrame({"a": [1]}))
    assert Dataset.from_path(source).to_pandas()["a"].tolist() == [1]
    stored, _, _ = save_artifact(store, Dataset.from_path(source), Dataset)
    assert (Path(stored.uri) / "train.parquet").is_file()


def test_handle_load_by_unknown_type_name() -> None:
    handle = Dataset(uri="", path=Path("."), type_name="Dataset", sha256="")
    with pytest.raises(MaterializerError, match=r"type 'nolib.Thing' not found"):
        handle.load("nolib.Thing")


def test_handle_from_memory_store_keeps_its_download_while_alive(
    memory_store: ArtifactStore,
) -> None:
    stored, type_name, props = save_artifact(memory_store, pd.DataFrame({"a": [1]}), pd.DataFrame)
    handle = load_artifact(memory_store, stored.uri, type_name, stored.sha256, props, Dataset)
    folder = handle.path
    gc.collect()
    assert handle.to_pandas()["a"].tolist() == [1]
    del handle
    gc.collect()
    assert not folder.exists()


# -- save/load failures are wrapped --------------------------------------------------------


class Broken:
    pass


class BrokenMaterializer(Materializer):
    python_types = (Broken,)
    artifact_type = "Broken"

    def save(self, obj: Any, folder: Path) -> dict[str, Any]:
        (folder / "half").write_bytes(b"x")
        raise RuntimeError("disk on fire")

    def load(self, folder: Path, python_type: type) -> Any:
        raise RuntimeError("cannot read")


def test_materializer_errors_are_wrapped_and_nothing_is_published(store: ArtifactStore) -> None:
    register_materializer(BrokenMaterializer)
    with pytest.raises(MaterializerError, match=r"could not save a .*Broken: disk on fire") as info:
        save_artifact(store, Broken(), Broken)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert not (Path(store.url) / "objects").exists()
    assert list((Path(store.url) / ".tmp").iterdir()) == []


def test_properties_must_be_json(store: ArtifactStore) -> None:
    class BadProps(JsonMaterializer):
        python_types = (Unknown,)

        def save(self, obj: Any, folder: Path) -> dict[str, Any]:
            return {"when": object()}

    register_materializer(BadProps)
    with pytest.raises(MaterializerError, match=r"properties of .*BadProps: value at \$\.when"):
        save_artifact(store, Unknown(), Unknown)


# -- pandas / Arrow ------------------------------------------------------------------------


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "n": [1, 2, 3],
            "x": [0.5, None, 2.5],
            "s": ["a", "b", None],
            "c": pd.Categorical(["u", "v", "u"]),
            "t": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"], utc=True),
        },
        index=pd.Index(["r1", "r2", "r3"], name="id"),
    )


def test_dataframe_round_trip_keeps_index_and_dtypes(store: ArtifactStore) -> None:
    frame = _frame()
    stored, type_name, props = save_artifact(store, frame, pd.DataFrame)
    assert (Path(stored.uri) / "data.parquet").is_file()
    assert props["num_rows"] == 3 and props["num_columns"] == 5
    assert {"name": "c", "dtype": "category"} in props["columns"]
    loaded = load_artifact(store, stored.uri, type_name, stored.sha256, props, pd.DataFrame)
    pd.testing.assert_frame_equal(loaded, frame)


def test_dataframe_with_range_index_and_int_labels(store: ArtifactStore) -> None:
    frame = pd.DataFrame(np.arange(6).reshape(3, 2))
    pd.testing.assert_frame_equal(round_trip(store, frame, pd.DataFrame), frame)


def test_equal_dataframes_get_equal_fingerprints(tmp_path: Path) -> None:
    first = ArtifactStore.open(str(tmp_path / "a"), durable=False)
    second = ArtifactStore.open(str(tmp_path / "b"), durable=False)
    one, _, _ = save_artifact(first, _frame(), pd.DataFrame)
    two, _, _ = save_artifact(second, _frame().copy(), pd.DataFrame)
    assert one.sha256 == two.sha256
    table = pa.table({"a": [1, 2], "b": ["x", "y"]})
    assert (
        save_artifact(first, table, pa.Table)[0].sha256
        == save_artifact(second, pa.table({"a": [1, 2], "b": ["x", "y"]}), pa.Table)[0].sha256
    )


def test_mixed_column_labels_are_refused(store: ArtifactStore) -> None:
    with pytest.raises(MaterializerError, match=r"column labels mix types"):
        save_artifact(store, pd.DataFrame({1: [1], "a": [2]}), pd.DataFrame)


def test_duplicate_columns_are_refused(store: ArtifactStore) -> None:
    frame = pd.DataFrame([[1, 2]], columns=["a", "a"])
    with pytest.raises(MaterializerError, match=r"duplicate columns \['a'\]"):
        save_artifact(store, frame, pd.DataFrame)


def test_arrow_round_trip_and_cross_loading(store: ArtifactStore) -> None:
    table = pa.table({"a": [1, 2], "b": ["x", None]})
    stored, type_name, props = save_artifact(store, table, pa.Table)
    assert props["columns"] == [{"name": "a", "dtype": "int64"}, {"name": "b", "dtype": "string"}]
    assert load_artifact(store, stored.uri, type_name, stored.sha256, props, pa.Table).equals(table)
    frame = load_artifact(store, stored.uri, type_name, stored.sha256, props, pd.DataFrame)
    assert frame["a"].tolist() == [1, 2]
    from_pandas = round_trip(store, _frame(), pd.DataFrame, pa.Table)
    assert from_pandas.num_rows == 3 and "id" in from_pandas.column_names


def test_dataset_without_parquet_cannot_load_as_a_dataframe(
    store: ArtifactStore, tmp_path: Path
) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "weights.bin").write_bytes(b"w")
    stored, _, props = save_artifact(store, Model.from_path(tmp_path / "m"), Model)
    with pytest.raises(MaterializerError, match=r"holds no .parquet files"):
        load_artifact(store, stored.uri, "Dataset", stored.sha256, props, pd.DataFrame)


# -- numpy ---------------------------------------------------------------------------------


def test_ndarray_round_trip(store: ArtifactStore) -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]  # not contiguous
    stored, type_name, props = save_artifact(store, array, np.ndarray)
    assert (type_name, props) == ("Array", {"shape": [3, 2], "dtype": "float32"})
    loaded = load_artifact(store, stored.uri, type_name, stored.sha256, props, np.ndarray)
    np.testing.assert_array_equal(loaded, array)
    assert loaded.dtype == np.float32


def test_object_arrays_are_refused(store: ArtifactStore) -> None:
    with pytest.raises(MaterializerError, match=r"dtype object: object arrays need pickle"):
        save_artifact(store, np.array([{"a": 1}], dtype=object), np.ndarray)


def test_masked_arrays_are_refused(store: ArtifactStore) -> None:
    with pytest.raises(MaterializerError, match=r"masked array"):
        save_artifact(store, np.ma.masked_array([1, 2], mask=[0, 1]), np.ndarray)


# -- scikit-learn --------------------------------------------------------------------------


def _xy() -> tuple[np.ndarray, np.ndarray]:
    x = np.random.RandomState(0).rand(30, 3)
    return x, (x[:, 0] > 0.5).astype(int)


def test_estimator_round_trip_with_skops(store: ArtifactStore) -> None:
    x, y = _xy()
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5)).fit(x, y)
    stored, type_name, props = save_artifact(store, model, BaseEstimator)
    assert type_name == "Model" and (Path(stored.uri) / "model.skops").is_file()
    assert props["estimator"] == "Pipeline"
    assert props["estimator_class"] == "sklearn.pipeline.Pipeline"
    assert props["params"]["logisticregression__C"] == 0.5
    assert props["params"]["standardscaler"] == "StandardScaler()"
    loaded = load_artifact(store, stored.uri, type_name, stored.sha256, props, BaseEstimator)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    handle = load_artifact(store, stored.uri, type_name, stored.sha256, props, Model)
    assert [p.name for p in handle.files()] == ["model.skops"]


def double(values: np.ndarray) -> np.ndarray:
    return values * 2


def test_untrusted_types_are_refused_by_name(store: ArtifactStore) -> None:
    x, _ = _xy()
    model = FunctionTransformer(double).fit(x)
    stored, type_name, props = save_artifact(store, model, BaseEstimator)
    with pytest.raises(MaterializerError, match=r"untrusted types \[.*double"):
        load_artifact(store, stored.uri, type_name, stored.sha256, props, BaseEstimator)


def test_trusted_types_filter() -> None:
    trusted, refused = trusted_types(
        ["sklearn.tree._tree.Tree", "numpy.float64", "builtins.len", "builtins.eval", "evil.X"]
    )
    assert trusted == ["sklearn.tree._tree.Tree", "numpy.float64", "builtins.len"]
    assert refused == ["builtins.eval", "evil.X"]


def test_model_folder_without_skops_file_is_explained(store: ArtifactStore, tmp_path: Path) -> None:
    (tmp_path / "xgb").mkdir()
    (tmp_path / "xgb" / "model.json").write_text("{}")
    stored, type_name, props = save_artifact(store, Model.from_path(tmp_path / "xgb"), Model)
    with pytest.raises(MaterializerError, match=r"no model.skops in .*load it as conveyor.Model"):
        load_artifact(store, stored.uri, type_name, stored.sha256, props, BaseEstimator)


def test_memory_store_round_trip_for_every_builtin(memory_store: ArtifactStore) -> None:
    assert round_trip(memory_store, {"a": [1]}, dict) == {"a": [1]}
    pd.testing.assert_frame_equal(round_trip(memory_store, _frame(), pd.DataFrame), _frame())
    np.testing.assert_array_equal(round_trip(memory_store, np.ones(3), np.ndarray), np.ones(3))
    assert round_trip(memory_store, Metrics(a=1.0), Metrics) == {"a": 1.0}
    marker = json.loads(
        fsspec.open(f"{save_artifact(memory_store, [1], list)[0].uri}/_conveyor.json").open().read()
    )
    assert marker["type_name"] == "JSON" and marker["files"] == ["data.json"]


def test_handle_materializer_is_registered_lazily() -> None:
    assert isinstance(materializer_for(Dataset).get(), HandleMaterializer)
