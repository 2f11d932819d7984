"""Iceberg table maintenance: compact small files, expire old snapshots, remove orphan files.

Scope: every table of the given layers, one at a time, each under its table lock (and, in
the layers dbt writes, the dbt lock: lakehouse.locks), so a build or an ingestion running
at the same time waits rather than conflicts. Each layer is maintained by the engine whose S3
user may write its prefix (lakehouse.stack.provision): Spark's procedures for raw,
quarantine and audit, Trino's `ALTER TABLE ... EXECUTE` for staging, intermediate and
marts. Rewrites files and deletes only what no snapshot newer than the retention still
references, and files no snapshot references that are older than the orphan margin; the
rows a query returns never change. Reads table metadata through pyiceberg for the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from contextlib import nullcontext

from lakehouse import locks
from lakehouse.catalog import NAMESPACES, catalog
from lakehouse.errors import LakehouseError
from lakehouse.orchestration.schedule import period
from lakehouse.settings import Settings

SPARK_LAYERS = ("raw", "quarantine", "audit")
TRINO_LAYERS = ("staging", "intermediate", "marts")


@dataclass
class TableReport:
    table: str
    engine: str
    files_before: int
    files_after: int
    snapshots_before: int
    snapshots_after: int
    seconds: float

    def line(self) -> str:
        return (f"{self.table} ({self.engine}): data files {self.files_before} -> {self.files_after}, "
                f"snapshots {self.snapshots_before} -> {self.snapshots_after} ({self.seconds:.1f}s)")


def _counts(settings: Settings, namespace: str, name: str) -> tuple[int, int]:
    meta = catalog(settings).load_table((namespace, name)).metadata
    snap = meta.snapshot_by_id(meta.current_snapshot_id) if meta.current_snapshot_id else None
    files = int((snap.summary or {}).get("total-data-files", 0)) if snap else 0
    return files, len(meta.snapshots)


def tables(settings: Settings, namespace: str) -> list[str]:
    if namespace not in NAMESPACES:
        raise LakehouseError(f"unknown layer {namespace!r}", f"known layers: {', '.join(NAMESPACES)}")
    cat = catalog(settings)
    if (namespace,) not in cat.list_namespaces():
        return []
    return sorted(ident[-1] for ident in cat.list_tables(namespace))


def _cutoff(retention: str) -> datetime:
    delta = period(retention)
    if delta is None:
        raise LakehouseError(f"retention {retention!r} is not a duration like 7d or 36h",
                             "fix LAKEHOUSE_MAINTENANCE_*_RETENTION in .env")
    return datetime.now(timezone.utc) - delta


def _spark_maintain(settings: Settings, spark, namespace: str, name: str) -> None:
    cat = settings.catalog_name
    ident = f"{cat}.{namespace}.{name}"  # unqualified, Spark reads the namespace as a catalog
    snapshots_before = _cutoff(settings.maintenance_snapshot_retention).strftime("%Y-%m-%d %H:%M:%S")
    orphans_before = _cutoff(settings.maintenance_orphan_retention).strftime("%Y-%m-%d %H:%M:%S")
    spark.sql(f"CALL {cat}.system.rewrite_data_files(table => '{ident}', "
              "options => map('min-input-files', '2'))").collect()
    spark.sql(f"CALL {cat}.system.expire_snapshots(table => '{ident}', "
              f"older_than => TIMESTAMP '{snapshots_before}', retain_last => 1)").collect()
    # prefix_listing: list through the table's S3FileIO (Spark has no Hadoop s3 filesystem here)
    spark.sql(f"CALL {cat}.system.remove_orphan_files(table => '{ident}', "
              f"older_than => TIMESTAMP '{orphans_before}', prefix_listing => true)").collect()


def _trino_maintain(settings: Settings, cursor, namespace: str, name: str) -> None:
    table = f'{settings.catalog_name}.{namespace}."{name}"'
    for statement in (
            f"ALTER TABLE {table} EXECUTE optimize",
            f"ALTER TABLE {table} EXECUTE expire_snapshots(retention_threshold => "
            f"'{settings.maintenance_snapshot_retention}')",
            f"ALTER TABLE {table} EXECUTE remove_orphan_files(retention_threshold => "
            f"'{settings.maintenance_orphan_retention}')"):
        cursor.execute(statement)
        cursor.fetchall()


def maintain(settings: Settings, namespace: str, only: list[str] | None = None, say=print) -> list[TableReport]:
    """Maintain every table of one layer (or the named ones); a report line per table."""
    import time

    names = tables(settings, namespace)
    if only:
        missing = sorted(set(only) - set(names))
        if missing:
            raise LakehouseError(f"no table {', '.join(missing)} in layer {namespace}",
                                 f"tables there: {', '.join(names) or 'none'}")
        names = [n for n in names if n in only]
    if not names:
        say(f"{namespace}: no tables, nothing to do")
        return []
    engine = "spark" if namespace in SPARK_LAYERS else "trino"
    say(f"{namespace}: {len(names)} table(s) via {engine}; snapshots kept "
        f"{settings.maintenance_snapshot_retention}, orphan margin {settings.maintenance_orphan_retention}")
    reports = []
    if engine == "spark":
        from lakehouse.spark import spark_session, stop_session

        handle = spark_session(settings, f"maintain-{namespace}")
        run = lambda n: _spark_maintain(settings, handle, namespace, n)  # noqa: E731
        close = lambda: stop_session(handle)  # noqa: E731
    else:
        from lakehouse.trino import connect

        conn = connect(settings, schema=namespace)
        cursor = conn.cursor()
        run = lambda n: _trino_maintain(settings, cursor, namespace, n)  # noqa: E731
        close = conn.close
    try:
        for name in names:
            t0 = time.monotonic()
            files_before, snaps_before = _counts(settings, namespace, name)
            try:
                # Its writers wait while its files are rewritten (and it waits for them):
                # ingestion holds this lock shared, dbt's builds hold the dbt lock.
                with locks.hold(settings, f"table:{namespace}.{name}", purpose=f"maintain {namespace}.{name}", say=say), \
                        (locks.hold(settings, "dbt", purpose=f"maintain {namespace}.{name}", say=say)
                         if engine == "trino" else nullcontext()):
                    run(name)
            except Exception as exc:  # engine errors: name the table, keep the cause
                java = getattr(exc, "java_exception", None)  # py4j: the JVM's message, not "o76.sql"
                cause = (java.toString() if java is not None else str(exc)).splitlines()[0][:400]
                raise LakehouseError(f"maintenance of {namespace}.{name} failed: {cause}",
                                     "the table is unchanged by the failed step (Iceberg commits "
                                     "atomically); see the log above, then run it again") from exc
            files_after, snaps_after = _counts(settings, namespace, name)
            report = TableReport(f"{namespace}.{name}", engine, files_before, files_after,
                                 snaps_before, snaps_after, time.monotonic() - t0)
            say(report.line())
            reports.append(report)
    finally:
        close()
    return reports
