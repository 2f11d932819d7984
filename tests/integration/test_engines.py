"""Spark, Trino and pyiceberg share one Iceberg catalog and see the same data."""

import uuid
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from lakehouse.catalog import catalog
from lakehouse.trino import query

pytestmark = [pytest.mark.trino, pytest.mark.spark]

ROWS = [
    (i,
     None if i % 97 == 0 else f"station-{i:05d}-{'ñandú' if i % 2 else '東京'}",
     None if i % 89 == 0 else i * 0.25 - 100.0,
     Decimal(f"{i % 1000}.{i % 100:02d}"),
     i % 3 == 0,
     date(2026, 1, 1 + i % 28),
     datetime(2026, 1, 1 + i % 28, i % 24, i % 60, i % 60, (i * 7919) % 1_000_000, tzinfo=timezone.utc))
    for i in range(1, 2001)
]
SCHEMA = ("id BIGINT, name STRING, value DOUBLE, amount DECIMAL(10,2), flag BOOLEAN, "
          "day DATE, ts TIMESTAMP")


def _normalise(row):
    """Same value, engine-neutral: timestamps as UTC instants."""
    out = []
    for v in row:
        if isinstance(v, datetime):
            v = (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
        out.append(v)
    return tuple(out)


@pytest.fixture(scope="module")
def spark_table(stack, spark):
    name = f"raw.it_roundtrip_{uuid.uuid4().hex[:8]}"
    cat = stack.catalog_name
    spark.sql(f"CREATE TABLE {cat}.{name} ({SCHEMA}) USING iceberg PARTITIONED BY (days(ts))")
    spark.createDataFrame(ROWS, SCHEMA).writeTo(f"{cat}.{name}").append()
    yield name


def test_spark_table_reads_back_identically_through_trino(stack, spark_table):
    got = query(stack, f"SELECT id, name, value, amount, flag, day, ts FROM {spark_table} ORDER BY id")
    assert len(got) == len(ROWS)
    assert [_normalise(r) for r in got] == [_normalise(r) for r in ROWS]


def test_spark_table_reads_back_identically_through_pyiceberg(stack, spark_table):
    table = catalog(stack).load_table(spark_table)
    arrow = table.scan().to_arrow().sort_by("id")
    got = list(zip(*(arrow.column(c).to_pylist() for c in
                     ("id", "name", "value", "amount", "flag", "day", "ts"))))
    assert len(got) == len(ROWS)
    assert [_normalise(r) for r in got] == [_normalise(r) for r in ROWS]
    assert table.spec().fields[0].transform.__class__.__name__ == "DayTransform"
    assert table.location().startswith(f"s3://{stack.warehouse_bucket}/raw/")


def test_table_created_through_trino_is_visible_to_spark(stack, spark):
    name = f"marts.it_from_trino_{uuid.uuid4().hex[:8]}"
    query(stack, f"CREATE TABLE {name} (id BIGINT, label VARCHAR, at TIMESTAMP(6) WITH TIME ZONE)")
    query(stack, f"INSERT INTO {name} VALUES (1, 'uno', TIMESTAMP '2026-03-01 10:00:00.123456 UTC'), "
                 f"(2, NULL, TIMESTAMP '2026-03-02 23:59:59.000001 UTC'), (3, 'tres', NULL)")
    spark.catalog.clearCache()
    rows = spark.table(f"{stack.catalog_name}.{name}").orderBy("id").collect()
    got = [_normalise((r["id"], r["label"], r["at"])) for r in rows]
    assert got == [
        (1, "uno", datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=timezone.utc)),
        (2, None, datetime(2026, 3, 2, 23, 59, 59, 1, tzinfo=timezone.utc)),
        (3, "tres", None),
    ]
    schema, table = name.split(".")
    files = query(stack, f'SELECT file_path FROM {schema}."{table}$files"')
    assert files and all(f[0].startswith(f"s3://{stack.warehouse_bucket}/marts/") for f in files)


def test_the_trino_cli_connects_over_https_with_the_platform_password(stack):
    """`make sql`: the CLI jar, the pinned certificate, the password from .env (not a prompt)."""
    from .conftest import lakehouse

    proc = lakehouse("sql", "--query", "SELECT current_user, 6 * 7", "--format", "CSV")
    assert proc.stdout.strip().splitlines()[-1] == '"lakehouse","42"', proc.stdout + proc.stderr

