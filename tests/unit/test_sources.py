"""Reading sources: files, globs, partition folders, SQL, in-memory tables, and their errors."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, text

from conveyor.data import sources
from conveyor.data.errors import DataError, DataSourceError
from conveyor.data.sources import (
    SqlQuery,
    describe_source,
    mask_url,
    natural_key,
    open_source,
    read_file,
    read_source,
    read_sql,
    resolve_files,
)
from conveyor.exceptions import ConveyorError


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


# -- files, globs, folders -------------------------------------------------------------------


def test_errors_hang_under_the_data_tree() -> None:
    assert issubclass(DataSourceError, DataError)
    assert issubclass(DataSourceError, ConveyorError)


def test_natural_order_sorts_numbers_by_value() -> None:
    names = ["day-10.csv", "day-2.csv", "Day-1.csv", "day-2b.csv"]
    assert sorted(names, key=natural_key) == ["Day-1.csv", "day-2.csv", "day-2b.csv", "day-10.csv"]


def test_glob_and_folder_resolve_in_natural_order_skipping_hidden(tmp_path: Path) -> None:
    for name in ("p-10.csv", "p-2.csv", "p-1.csv", ".p-3.csv", "_SUCCESS", "notes.txt"):
        _write(tmp_path / name, "a\n1\n")
    _write(tmp_path / "_tmp" / "p-4.csv", "a\n1\n")
    expected = ["p-1.csv", "p-2.csv", "p-10.csv"]
    assert [p.name for p in resolve_files(tmp_path)] == expected
    assert [p.name for p in resolve_files(str(tmp_path / "p-*.csv"))] == expected


def test_missing_source_and_empty_folder_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match=r"nope does not exist"):
        resolve_files(tmp_path / "nope")
    with pytest.raises(DataSourceError, match=r"holds no data files"):
        resolve_files(tmp_path)
    with pytest.raises(DataSourceError, match=r"no data files match"):
        resolve_files(str(tmp_path / "*.csv"))


def test_csv_tsv_and_json_lines_read(tmp_path: Path) -> None:
    csv_table = read_file(_write(tmp_path / "a.csv", "id,name\n1,x\n2,y\n"))
    assert csv_table.to_pydict() == {"id": [1, 2], "name": ["x", "y"]}
    tsv_table = read_file(_write(tmp_path / "a.tsv", "id\tname\n1\tx\n"))
    assert tsv_table.column_names == ["id", "name"]
    json_table = read_file(_write(tmp_path / "a.jsonl", '{"id": 1, "name": "x"}\n\n{"id": 2}\n'))
    assert json_table.to_pydict() == {"id": [1, 2], "name": ["x", None]}


def test_folder_partitions_become_string_columns(tmp_path: Path) -> None:
    _write(tmp_path / "country=FR" / "part-0.csv", "amount\n1\n2\n")
    _write(tmp_path / "country=US" / "part-0.csv", "amount\n3\n")
    table = read_source(tmp_path)
    assert table.to_pydict() == {"amount": [1, 2, 3], "country": ["FR", "FR", "US"]}
    assert table.schema.field("country").type == pa.string()
    for country in ("FR", "US"):  # streamed Parquet gets the same columns
        folder = tmp_path / "pq" / f"country={country}"
        folder.mkdir(parents=True)
        pq.write_table(pa.table({"amount": [1]}), folder / "part-0.parquet")
    streamed = open_source(tmp_path / "pq").read_all()
    assert streamed.to_pydict() == {"amount": [1, 1], "country": ["FR", "US"]}


# -- bad input: each error names file, line and column -------------------------------------


def test_malformed_csv_row_names_file_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "orders.csv", "id,item,price\n1,pen,2.5\n2,ink,3\n3,pad,4,oops\n")
    with pytest.raises(DataSourceError) as info:
        read_file(path)
    message = str(info.value)
    assert str(path) in message
    assert "line 4" in message
    assert "'oops' comes after the last column 'price'" in message
    short = _write(tmp_path / "short.csv", "id,item,price\n1,pen,2.5\n2,ink\n")
    with pytest.raises(DataSourceError, match=r"short.csv: line 3: .*column 'price'.*missing"):
        read_file(short)


def test_csv_value_that_does_not_fit_a_declared_type_names_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "z.csv", "id,zip\n1,75001\n2,N1 9GU\n")
    with pytest.raises(DataSourceError, match=r"z.csv: line 3, column 'zip': .*'N1 9GU'"):
        read_file(path, column_types={"zip": "int64"})
    assert read_file(path, column_types={"zip": "string"}).column("zip").to_pylist()[0] == "75001"
    with pytest.raises(DataSourceError, match=r"column_types\['zip'\] = 'text' is not an Arrow"):
        read_file(path, column_types={"zip": "text"})


def test_wrong_encoding_names_line_column_offset_and_suggests_encoding(tmp_path: Path) -> None:
    content = "id,city\n1,Paris\n2,Orl\xe9ans\n".encode("latin-1")
    path = _write(tmp_path / "cities.csv", content)
    offset = content.index(b"\xe9")
    with pytest.raises(DataSourceError) as info:
        read_file(path)
    message = str(info.value)
    assert f"{path}: line 3, column 'city': byte 0xe9 at offset {offset}" in message
    assert "encoding='latin-1'" in message
    assert read_file(path, encoding="latin-1").column("city").to_pylist() == ["Paris", "Orléans"]


def test_encoding_check_reads_in_chunks_without_false_alarms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "_CHUNK", 5)  # cut multi-byte characters between chunks
    good = _write(tmp_path / "good.csv", "id,name\n1,Zoë\n2,日本語\n")
    assert read_file(good).column("name").to_pylist() == ["Zoë", "日本語"]
    content = "id,name\n1,日本語\n2,Orl\xe9ans\n".encode().replace(b"\xc3\xa9", b"\xe9")
    bad = _write(tmp_path / "bad.csv", content)
    offset = content.index(b"\xe9")
    with pytest.raises(
        DataSourceError, match=rf"line 3, column 'name': byte 0xe9 at offset {offset}"
    ):
        read_file(bad)


def test_wrong_encoding_in_json_lines_names_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path / "e.jsonl", '{"id": 1, "city": "Orl\xe9ans"}\n'.encode("latin-1"))
    with pytest.raises(DataSourceError, match=r"e.jsonl: line 1, column 'city': byte 0xe9"):
        read_file(path)
    assert read_file(path, encoding="latin-1").column("city").to_pylist() == ["Orléans"]


@pytest.mark.parametrize("name", ["empty.csv", "empty.parquet", "empty.jsonl"])
def test_empty_file_is_refused(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path / name, b"")
    with pytest.raises(DataSourceError, match=rf"{name} is empty \(0 bytes\)"):
        read_file(path)


def test_blank_csv_and_json_array_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match=r"blank.csv holds no header and no rows"):
        read_file(_write(tmp_path / "blank.csv", "\n\n"))
    with pytest.raises(DataSourceError, match=r"is a JSON array; conveyor reads JSON lines"):
        read_file(_write(tmp_path / "arr.json", '[{"a": 1}]'))


def test_json_lines_errors_name_line_and_column(tmp_path: Path) -> None:
    changed = _write(tmp_path / "c.jsonl", '{"id": 1, "v": "x"}\n{"id": 2}\n{"id": 3, "v": 4}\n')
    with pytest.raises(DataSourceError, match=r"c.jsonl: line 3, column 'v': a number here but "):
        read_file(changed)
    broken = _write(tmp_path / "b.jsonl", '{"id": 1}\n{"id": \n')
    with pytest.raises(DataSourceError, match=r"b.jsonl: line 2: invalid JSON"):
        read_file(broken)


def test_parquet_column_that_changed_type_names_both_files_and_types(tmp_path: Path) -> None:
    first, second = tmp_path / "part-1.parquet", tmp_path / "part-2.parquet"
    pq.write_table(pa.table({"id": [1, 2], "amount": [1.5, 2.0]}), first)
    pq.write_table(pa.table({"id": [3], "amount": ["3.0"]}), second)
    with pytest.raises(DataSourceError) as info:
        read_source(tmp_path)
    message = str(info.value)
    assert "column 'amount' changed type: double in" in message
    assert f"{first}" in message and f"{second}" in message and "but string in" in message
    with pytest.raises(DataSourceError, match=r"column 'amount' changed type"):
        open_source(tmp_path)


def test_parquet_files_may_add_columns_and_all_null_columns(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": [1], "note": pa.nulls(1)}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"id": [2], "note": ["x"], "extra": [True]}), tmp_path / "b.parquet")
    table = read_source(tmp_path)
    assert table.to_pydict() == {"id": [1, 2], "note": [None, "x"], "extra": [None, True]}
    streamed = open_source(tmp_path).read_all()
    assert streamed.to_pydict() == table.to_pydict()


def test_csv_types_widen_across_files_or_name_the_conflict(tmp_path: Path) -> None:
    _write(tmp_path / "a" / "1.csv", "id,v\n1,2\n")
    _write(tmp_path / "a" / "2.csv", "id,v\n2,2.5\n")
    assert read_source(tmp_path / "a").column("v").to_pylist() == [2.0, 2.5]
    _write(tmp_path / "b" / "1.csv", "id,zip\n1,75001\n")
    _write(tmp_path / "b" / "2.csv", "id,zip\n2,N1 9GU\n")
    with pytest.raises(DataSourceError, match=r"column 'zip' changed type: int64 in .*1.csv but "):
        read_source(tmp_path / "b")
    fixed = read_source(tmp_path / "b", column_types={"zip": "string"})
    assert fixed.column("zip").to_pylist() == ["75001", "N1 9GU"]


def test_mixed_formats_and_unknown_suffix_are_refused(tmp_path: Path) -> None:
    _write(tmp_path / "m" / "a.csv", "a\n1\n")
    pq.write_table(pa.table({"a": [2]}), tmp_path / "m" / "b.parquet")
    with pytest.raises(DataSourceError, match=r"mix formats \(csv, parquet\)"):
        read_source(tmp_path / "m")
    odd = _write(tmp_path / "data.txt", "a\n1\n")
    with pytest.raises(DataSourceError, match=r"pass file_format="):
        read_file(odd)
    assert read_file(odd, file_format="csv").num_rows == 1


# -- SQL -----------------------------------------------------------------------------------


def _sqlite(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER, item TEXT, price REAL)")
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?)", [(1, "pen", 2.5), (2, "ink", None)])
    return f"sqlite:///{path}"


def test_sql_query_on_sqlite(tmp_path: Path) -> None:
    url = _sqlite(tmp_path / "shop.db")
    table = read_source(SqlQuery(url, "SELECT id, item, price FROM orders ORDER BY id"))
    assert table.to_pydict() == {"id": [1, 2], "item": ["pen", "ink"], "price": [2.5, None]}
    empty = read_sql(url, "SELECT id FROM orders WHERE id > 10")
    assert empty.column_names == ["id"] and empty.num_rows == 0


def test_sql_errors_name_the_database_and_the_query(tmp_path: Path) -> None:
    url = _sqlite(tmp_path / "shop.db")
    with pytest.raises(DataSourceError, match=r"query failed \(sql sqlite:///.*SELECT nope"):
        read_sql(url, "SELECT nope FROM orders")
    with pytest.raises(DataSourceError, match=r"no such SQLite file"):
        read_sql(f"sqlite:///{tmp_path / 'missing.db'}", "SELECT 1")
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(DataSourceError, match=r"column 'id' twice"):
        read_sql(url, "SELECT id, id FROM orders")


def test_unreachable_sql_database_fails_fast_with_masked_url() -> None:
    url = "postgresql+psycopg://postgres:hunter2@127.0.0.1:1/test"
    started = time.monotonic()
    with pytest.raises(DataSourceError) as info:
        read_sql(url, "SELECT 1", timeout_s=2)
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "cannot connect to postgresql+psycopg://postgres:***@127.0.0.1:1/test" in message
    assert "hunter2" not in message
    assert mask_url(url) == "postgresql+psycopg://postgres:***@127.0.0.1:1/test"


def test_sql_query_on_postgres(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE events (id INT, kind TEXT, at DATE, amount NUMERIC(8,2))"))
        conn.execute(
            text("INSERT INTO events VALUES (1, 'click', '2024-01-02', 1.50), (2, NULL, NULL, 2)")
        )
    engine.dispose()
    table = read_sql(postgres_url, "SELECT id, kind, at, amount::float AS amount FROM events")
    assert table.column("id").to_pylist() == [1, 2]
    assert table.column("kind").to_pylist() == ["click", None]
    assert str(table.column("at").type) == "date32[day]"
    assert table.column("amount").to_pylist() == [1.5, 2.0]


# -- in-memory -----------------------------------------------------------------------------


def test_in_memory_tables_and_frames() -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    assert read_source(frame).to_pydict() == {"a": [1, 2], "b": ["x", "y"]}
    table = pa.table({"a": [1]})
    assert read_source(table) is table
    assert read_source(table.to_reader()).num_rows == 1
    assert describe_source(frame) == "in-memory pandas DataFrame"
    with pytest.raises(DataSourceError, match=r"unsupported data source dict"):
        read_source({"a": [1]})
