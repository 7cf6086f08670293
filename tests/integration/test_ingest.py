"""Ingestion end to end: library function, Dataset handle, and the components in real runs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import conveyor
from conveyor import Dataset
from conveyor.components import ingest
from conveyor.core.loader import load_pipeline
from conveyor.data.errors import DataError, DataSourceError
from conveyor.data.ingest import ingest_to_folder
from conveyor.data.sources import SqlQuery
from conveyor.exceptions import NotFoundError
from conveyor.store.metadata.records import ExecutionStatus
from conveyor.store.metadata.store import MetadataStore

PIPELINE = """
import pandas as pd
from conveyor import Dataset, component, pipeline
from conveyor.components import ingest, ingest_table


@component
def count(data: Dataset) -> dict:
    return {
        "splits": {s: len(data.to_pandas(split=s)) for s in data.splits()},
        "ids": sorted(int(i) for i in data.to_pandas()["id"]),
    }


@component
def scrape() -> pd.DataFrame:
    return pd.DataFrame({"id": [1, 2, 3], "price": [9.5, 3.0, 7.25]})


@pipeline
def daily(source: str = "", window: int = 1) -> None:
    count(ingest(source=source, name="events", span_window=window, key="id"))


@pipeline
def others(url: str = "", sql: str = "") -> None:
    count(ingest(source=url, sql=sql, name="orders", key="id"))
    count(ingest_table(scrape(), name="prices", key="id"))
"""


def _span(root: Path, number: int, ids: range) -> None:
    folder = root / f"span={number}"
    folder.mkdir(parents=True)
    lines = "".join(f"{i},item-{i},{i % 3}\n" for i in ids)
    (folder / "events.csv").write_text("id,item,label\n" + lines)


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    root = tmp_path / "landing"
    _span(root, 1, range(0, 40))
    _span(root, 2, range(40, 70))
    _span(root, 3, range(70, 100))
    return root


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*.parquet")}


def _objects(home: Path) -> tuple[int, int]:
    """(number of stored objects, their total bytes) in the home's artifact store."""
    objects = [p for p in (home / "artifacts" / "objects").glob("*/*") if p.is_dir()]
    size = sum(f.stat().st_size for o in objects for f in o.rglob("*") if f.is_file())
    return len(objects), size


# -- library -------------------------------------------------------------------------------


def test_ingest_writes_splits_deterministically(landing: Path, tmp_path: Path) -> None:
    first = ingest_to_folder(landing, tmp_path / "one", spans=0, key="id")
    second = ingest_to_folder(landing, tmp_path / "two", spans=0, key="id")
    assert sorted(_files(first.folder)) == [
        "split=eval/part-0.parquet",
        "split=train/part-0.parquet",
    ]
    assert _files(first.folder) == _files(second.folder)
    assert pq.read_metadata(first.folder / "split=train" / "part-0.parquet").metadata is not None
    props = first.properties
    assert props["dataset"] == "landing" and props["num_rows"] == 100
    assert props["rows"] == first.rows and sum(first.rows.values()) == 100
    assert [s["label"] for s in props["spans"]] == ["span=1", "span=2", "span=3"]
    assert [s["rows"] for s in props["spans"]] == [40, 30, 30]
    assert all(len(s["fingerprint"]) == 64 for s in props["spans"])
    assert props["columns"][0] == {"name": "id", "dtype": "int64"}
    assert props["split_by"]["key"] == ["id"] and props["split_by"]["hash"] == "sha1-64"


def test_rows_keep_their_split_when_a_span_is_added(landing: Path, tmp_path: Path) -> None:
    def assignment(out: Path) -> dict[int, str]:
        result = ingest_to_folder(landing, out, spans=0)
        return {
            row: split
            for split in result.rows
            for row in pq.read_table(out / f"split={split}").column("id").to_pylist()
        }

    before = assignment(tmp_path / "before")
    _span(landing, 4, range(100, 130))
    after = assignment(tmp_path / "after")
    assert {row: after[row] for row in before} == before


def test_bad_input_writes_nothing(landing: Path, tmp_path: Path) -> None:
    (landing / "span=3" / "events.csv").write_text("id,item,label\n1,a,0\n2,b\n")
    out = tmp_path / "out"
    with pytest.raises(DataSourceError, match=r"span=3/events.csv: line 3: malformed row"):
        ingest_to_folder(landing, out)
    with pytest.raises(DataError, match=r"split ratios must sum to 1"):
        ingest_to_folder(landing, out, spans=2, split_ratios={"train": 0.5})
    assert list(tmp_path.iterdir()) == [landing]


def test_output_folder_must_be_new_or_empty(landing: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    ingest_to_folder(landing, tmp_path / "out")
    with pytest.raises(DataError, match=r"out exists and is not empty"):
        ingest_to_folder(landing, tmp_path / "out")


def test_stratified_in_memory_and_sql_sources(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame({"id": range(100), "label": [i % 10 == 0 for i in range(100)]})
    result = ingest_to_folder(frame, tmp_path / "mem", key="id", stratify_by="label")
    train = pq.read_table(tmp_path / "mem" / "split=train").to_pandas()
    assert result.rows == {"train": 80, "eval": 20} and int(train["label"].sum()) == 8
    assert result.spans[0]["label"] == "table" and result.dataset == "table"
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER, total REAL)")
        conn.executemany("INSERT INTO orders VALUES (?, ?)", [(i, i * 1.5) for i in range(10)])
    query = SqlQuery(f"sqlite:///{db}", "SELECT * FROM orders")
    sql = ingest_to_folder(query, tmp_path / "sql", key="id")
    again = ingest_to_folder(query, tmp_path / "sql2", key="id")
    assert sql.num_rows == 10 and sql.source.startswith("sql sqlite:///")
    assert sql.spans == again.spans and _files(sql.folder) == _files(again.folder)


def test_dataset_handle_lists_and_opens_splits(landing: Path, tmp_path: Path) -> None:
    split = {"train": 0.6, "eval": 0.2, "test": 0.2}
    ingest_to_folder(landing, tmp_path / "d", spans=0, key="id", split_ratios=split)
    data = Dataset.from_path(tmp_path / "d")
    assert data.splits() == ["train", "eval", "test"]
    assert len(data.to_pandas()) == 100
    sizes = {name: len(data.to_pandas(split=name)) for name in data.splits()}
    assert sum(sizes.values()) == 100
    assert data.split("test").to_arrow().num_rows == sizes["test"]
    assert "split" not in data.split("eval").to_pandas().columns
    with pytest.raises(NotFoundError, match=r"has no split 'tset' \(did you mean 'test'\?\)"):
        data.split("tset")


# -- components in real runs ---------------------------------------------------------------


@pytest.fixture
def pipelines(tmp_path: Path) -> Path:
    path = tmp_path / "pipelines.py"
    path.write_text(PIPELINE)
    return path


def _outputs(home: Path, run_id: int, step: str) -> dict:
    with MetadataStore.open(f"sqlite:///{home / 'metadata.db'}") as store:
        execution = next(e for e in store.list_executions(run_id) if e.step_name == step)
        return {n: a for n, a in store.execution_outputs(execution.id).items()}


def _run(pipelines: Path, name: str, home: Path, **params: object) -> conveyor.RunResult:
    pipe = load_pipeline(f"{pipelines}:{name}", reload=True)
    result = conveyor.run(pipe, home=home, max_workers=1, **params)
    assert result.ok, result.error
    return result


@pytest.mark.slow
def test_reingest_is_the_same_version_and_a_window_reads_more_spans(
    landing: Path, pipelines: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    first = _run(pipelines, "daily", home, source=str(landing))
    stored = _objects(home)
    second = _run(pipelines, "daily", home, source=str(landing))
    assert second.step_status["ingest"] == ExecutionStatus.SUCCEEDED  # it ran again
    assert second.step_status["count"] == ExecutionStatus.CACHED  # same input version
    one, two = (_outputs(home, r.run_id, "ingest")["output"] for r in (first, second))
    assert one.id != two.id and one.sha256 == two.sha256
    assert _objects(home) == stored  # no new bytes
    assert one.properties["dataset"] == "events" and one.properties["num_rows"] == 30
    assert [s["label"] for s in one.properties["spans"]] == ["span=3"]

    window = _run(pipelines, "daily", home, source=str(landing), window=2)
    ingested = _outputs(home, window.run_id, "ingest")["output"].properties
    assert [s["label"] for s in ingested["spans"]] == ["span=2", "span=3"]
    assert ingested["num_rows"] == 60
    counted = Path(_outputs(home, window.run_id, "count")["output"].uri) / "data.json"
    assert '"ids":[40,41,' in counted.read_text()


@pytest.mark.slow
def test_sql_and_in_memory_components(pipelines: Path, tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER, total REAL)")
        conn.executemany("INSERT INTO orders VALUES (?, ?)", [(i, i * 2.0) for i in range(20)])
    home = tmp_path / "home"
    result = _run(pipelines, "others", home, url=f"sqlite:///{db}", sql="SELECT * FROM orders")
    orders = _outputs(home, result.run_id, "ingest")["output"].properties
    assert orders["dataset"] == "orders" and orders["num_rows"] == 20
    assert orders["source"].startswith("sql sqlite:///")
    prices = _outputs(home, result.run_id, "ingest_table")["output"].properties
    assert prices["dataset"] == "prices" and prices["num_rows"] == 3


def test_ingest_component_outside_a_pipeline_reports_an_unreachable_database() -> None:
    unreachable = "postgresql+psycopg://postgres:secret@127.0.0.1:1/test"
    with pytest.raises(DataSourceError) as info:
        ingest(source=unreachable, sql="SELECT 1")
    assert "cannot connect to postgresql+psycopg://postgres:***@127.0.0.1:1/test" in str(info.value)
    assert "secret" not in str(info.value)
