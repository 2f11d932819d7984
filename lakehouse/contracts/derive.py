"""Everything derived from a contract: never written by hand beside it.

- `spark_schema` / `raw_ddl`: the raw Iceberg table (contract fields + ingestion metadata).
- `QUARANTINE_COLUMNS` / `quarantine_ddl`, `AUDIT_COLUMNS` / `audit_ddl`: shared layouts.
- `expectation_suite`: the Great Expectations suite that validates a batch, per row.
- `dbt_sources`: the dbt sources file (raw tables, columns, tests, freshness).
"""

from __future__ import annotations

import re
from functools import lru_cache

from lakehouse.contracts.evolution import REQUIRED_PROP, VERSION_PROP
from lakehouse.contracts.model import Contract

# Columns ingestion adds to every raw row (platform.md section 5). _event_time is the
# contract's event time parsed to UTC (the partition column of most sources); null for a
# source whose contract declares none.
RAW_METADATA = (
    ("_event_time", "TIMESTAMP", "event time in UTC, parsed from the contract's eventTime field "
                                 "(null: the contract declares none)"),
    ("_batch_id", "STRING", "source/group/batch/checksum of the batch the row came in"),
    ("_source", "STRING", "contract id"),
    ("_group_number", "INT", "group number asked of the batch API"),
    ("_batch_number", "INT", "batch number the API answered"),
    ("_ingested_at", "TIMESTAMP", "when ingestion committed the row (UTC)"),
    ("_cycle", "INT", "cycle of the batch API the batch belongs to (null: ingested before cycles, read as 1)"),
    ("_contract_version", "STRING", "version of the contract the row was validated against "
                                    "(null: ingested before versions were recorded, read as 1.0.0)"),
)

QUARANTINE_COLUMNS = (
    ("_batch_id", "STRING", "batch the row came in"),
    ("_source", "STRING", "contract id"),
    ("_group_number", "INT", "group number asked of the batch API"),
    ("_batch_number", "INT", "batch number the API answered (null if the payload had none)"),
    ("_row_index", "INT", "position of the row in the batch's data array (null: whole payload)"),
    ("raw_payload", "STRING", "the row (or the whole body) exactly as received"),
    ("reasons", "ARRAY<STRING>", "why it was rejected: field, rule and value"),
    ("_ingested_at", "TIMESTAMP", "when ingestion committed the row (UTC)"),
    ("_cycle", "INT", "cycle of the batch (null: unknown, or ingested before cycles)"),
)

AUDIT_COLUMNS = (
    ("batch_id", "STRING", "source/group/batch/checksum"),
    ("source", "STRING", "contract id"),
    ("group_number", "INT", "group number asked of the batch API"),
    ("batch_number", "INT", "batch number the API answered"),
    ("rows_in", "BIGINT", "rows in the payload's data array"),
    ("rows_valid", "BIGINT", "rows written to raw"),
    ("rows_quarantined", "BIGINT", "rows written to quarantine"),
    ("snapshot_id", "BIGINT", "raw table snapshot that holds the batch (null: nothing valid)"),
    ("checksum", "STRING", "sha256 of the payload bytes"),
    ("started_at", "TIMESTAMP", "ingest start (UTC)"),
    ("finished_at", "TIMESTAMP", "ingest end (UTC)"),
    ("status", "STRING", "committed | held (by the quality gate) | released, rejected (a person's decision on a "
                         "held batch) | rejected (payload) | failed | missed (published, never fetched)"),
    ("message", "STRING", "what happened, for rejected, failed and missed batches"),
    ("cycle", "INT", "cycle of the batch API (null: unknown, or ingested before cycles, read as 1)"),
    ("cycle_source", "STRING", "declared (the API named the cycle) | inferred (docs/ingestion.md)"),
    ("payload_checksum", "STRING", "sha256 of the payload's canonical form (keys sorted, no whitespace)"),
    ("expectation_results", "STRING", "the contract's Great Expectations suite on the batch's well-typed "
                                      "rows: GE's validation-result layout, as JSON (docs/ingestion.md)"),
    ("gate_results", "STRING", "the quality gate on the batch, as JSON: held, reasons, quarantine rate and limit, "
                               "each batch-level rule's measure (docs/contracts.md)"),
    ("decided_by", "STRING", "who released or rejected a held batch (decision rows only)"),
)


# Iceberg v2, zstd Parquet, and more optimistic-commit retries than the default 4, so that
# concurrent ingests of different batches into one table all commit. Write-audit-publish on:
# ingestion stages each batch's write under a WAP id and publishes it in a second step,
# which Iceberg refuses to do twice (spark_jobs/ingest.py).
WAP_PROPERTY = "write.wap.enabled"
_TABLE_PROPS = ("'format-version'='2', 'write.parquet.compression-codec'='zstd', "
                f"'commit.retry.num-retries'='20', '{WAP_PROPERTY}'='true'")


def columns_sql(columns) -> str:
    return ",\n  ".join(f"{name} {typ} COMMENT '{doc.replace(chr(39), chr(39) * 2)}'"
                        for name, typ, doc in columns)


def raw_columns(contract: Contract) -> list[tuple[str, str, str]]:
    cols = []
    for f in contract.fields:
        doc = f.description + (f" [{f.unit}]" if f.unit else "")
        cols.append((f.name, f.spark_type, doc))
    return cols + list(RAW_METADATA)


def struct_type(columns):
    """pyspark StructType for (name, SQL type, doc) columns."""
    from pyspark.sql import types as T

    spark_type = {"STRING": T.StringType(), "BIGINT": T.LongType(), "DOUBLE": T.DoubleType(),
                  "BOOLEAN": T.BooleanType(), "TIMESTAMP": T.TimestampType(), "INT": T.IntegerType(),
                  "DATE": T.DateType(), "ARRAY<STRING>": T.ArrayType(T.StringType())}

    def typed(t: str):
        m = re.fullmatch(r"DECIMAL\((\d+),(\d+)\)", t)
        return T.DecimalType(int(m.group(1)), int(m.group(2))) if m else spark_type[t]

    return T.StructType([T.StructField(n, typed(t), nullable=True) for n, t, _ in columns])


def spark_schema(contract: Contract):
    """pyspark StructType of the raw table."""
    return struct_type(raw_columns(contract))


def partition_spec(contract: Contract) -> str:
    """The raw table's Iceberg partition transforms, from the contract's partitioning."""
    if contract.partitioning == "day(event_time)":
        return "days(_event_time)"
    if contract.partitioning == "day(ingested_at)":
        return "days(_ingested_at)"
    return ", ".join(f"days({f.name})" if f.type == "timestamp" else f.name
                     for f in contract.fields if f.partition)


def raw_ddl(contract: Contract, catalog: str) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {catalog}.raw.{contract.table} (\n  "
            f"{columns_sql(raw_columns(contract))}\n) USING iceberg\n"
            f"PARTITIONED BY ({partition_spec(contract)})\n"
            f"TBLPROPERTIES ({_TABLE_PROPS}, 'lakehouse.contract'='{contract.id}', "
            f"'{VERSION_PROP}'='{contract.version}', "
            f"'{REQUIRED_PROP}'='{','.join(f.name for f in contract.fields if f.required)}')")


def quarantine_ddl(contract: Contract, catalog: str) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {catalog}.quarantine.{contract.table} (\n  "
            f"{columns_sql(QUARANTINE_COLUMNS)}\n) USING iceberg\n"
            "PARTITIONED BY (days(_ingested_at))\n"
            f"TBLPROPERTIES ({_TABLE_PROPS}, 'lakehouse.contract'='{contract.id}')")


def audit_ddl(catalog: str) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {catalog}.audit.ingestion_log (\n  "
            f"{columns_sql(AUDIT_COLUMNS)}\n) USING iceberg\n"
            "PARTITIONED BY (source)\n"
            f"TBLPROPERTIES ({_TABLE_PROPS})")


@lru_cache(maxsize=1)
def gx_context():
    """One in-memory Great Expectations context per process (no files, no progress bars)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx


def expectation_suite(contract: Contract):
    """Great Expectations suite: not-null for required fields, ranges, patterns.

    Types are enforced before the suite runs (a value of the wrong type never reaches it).
    """
    import great_expectations as gx
    import great_expectations.expectations as gxe

    gx_context()  # GE builds suites inside a (here in-memory) data context
    suite = gx.ExpectationSuite(name=f"contract_{contract.id}")
    for f in contract.fields:
        if f.required:
            suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=f.name))
        if f.minimum is not None or f.maximum is not None:
            suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(
                column=f.name, min_value=f.minimum, max_value=f.maximum))
        if f.pattern is not None:
            suite.add_expectation(gxe.ExpectColumnValuesToMatchRegex(column=f.name, regex=f.pattern))
    return suite


def current_major(contract: Contract) -> str:
    """SQL: the raw rows validated under the contract's major version."""
    return f"coalesce(_contract_version, '1.0.0') like '{contract.major_version}.%'"


def dbt_sources(contracts: list[Contract], catalog: str) -> dict:
    """The dbt `sources:` document for the raw layer."""
    tables = []
    for c in contracts:
        columns = []
        for f in c.fields:
            col = {"name": f.name, "description": f.description + (f" [{f.unit}]" if f.unit else "")}
            if f.required:
                # rows validated under this major version (a field may have become required in it)
                col["data_tests"] = [{"not_null": {"config": {"where": current_major(c)}}}] \
                    if c.major_version > 1 else ["not_null"]
            columns.append(col)
        columns += [{"name": n, "description": d} for n, _, d in RAW_METADATA]
        tables.append({
            "name": c.table,
            "description": f"{c.title}. {c.description.strip()} Owner: {c.owner}. Generated from contracts/{c.id}.yaml.",
            "meta": {"owner": c.owner, "contract": c.id, "contract_version": c.version,
                     "natural_key": c.natural_key},
            "loaded_at_field": "_ingested_at",
            "freshness": {"warn_after": {"count": c.freshness.warn_minutes, "period": "minute"},
                          "error_after": {"count": c.freshness.error_minutes, "period": "minute"}},
            "columns": columns,
        })
    quarantine_columns = [{"name": n, "description": d} for n, _, d in QUARANTINE_COLUMNS]
    quarantined = [{
        "name": c.table,
        "description": f"Rows of {c.title.lower()} batches that failed contracts/{c.id}.yaml, with the "
                       "payload as received and every reason. Whole unparseable payloads have a null _row_index.",
        "meta": {"owner": c.owner, "contract": c.id},
        "columns": quarantine_columns,
    } for c in contracts]
    audit_columns = [{"name": n, "description": d} for n, _, d in AUDIT_COLUMNS]
    return {"version": 2, "sources": [
        {"name": "raw", "database": catalog, "schema": "raw",
         "description": "Valid rows as delivered by the batch APIs (generated from contracts/; do not edit).",
         "tables": tables},
        {"name": "quarantine", "database": catalog, "schema": "quarantine",
         "description": "Rejected rows and payloads, with reasons (written by ingestion; generated from contracts/).",
         "tables": quarantined},
        {"name": "audit", "database": catalog, "schema": "audit",
         "description": "Ingestion bookkeeping, one row per batch attempt (written by ingestion).",
         "tables": [{"name": "ingestion_log",
                     "description": "One row per batch: counts in, valid and quarantined, snapshot, checksum, timings.",
                     "loaded_at_field": "finished_at",
                     "freshness": {"warn_after": {"count": 15, "period": "minute"},
                                   "error_after": {"count": 60, "period": "minute"}},
                     "columns": audit_columns}]},
    ]}
