"""Ingest batches of one source into Iceberg, exactly once.

Scope: reads the batch API; writes raw.<source> (valid rows), quarantine.<source> (rejected
rows with their payload and reasons) and audit.ingestion_log (one row per batch). Never
deletes or overwrites a row.

Exactly once: every commit carries the batch key (source, group, batch number) and the
batch id (key + payload checksum) as Iceberg snapshot summary properties, in the same
commit as its rows. Each write is an Iceberg write-audit-publish: the rows are staged
under the WAP id `<key>#<batch id>` (a snapshot readers don't see), then published, and
Iceberg refuses to publish one WAP id twice. So when this client dies and the Spark
Connect server still finishes its write, a rerun publishes what was staged, or finds it
published, and never commits the batch twice. Before writing, each table is checked for
the key:
- same key, same checksum everywhere -> a replay: nothing is written, and it says so;
- same key, another checksum -> a changed payload: reported and quarantined whole, never
  merged;
- key present in some tables only (a crash between commits) -> the missing ones are
  written, so a rerun completes with no duplicates.
The audit log's committed rows count too: table maintenance expires snapshots older than
its retention (7 days), and with them their properties, but never an audit row.
A PostgreSQL advisory lock per batch key serialises two ingests of the same batch; ingests
of different batches run concurrently and rely on Iceberg's optimistic commit retries.

Only the row writes are Spark jobs, sent to the platform's Spark Connect server (this
process is a light client: no JVM, and nothing is sent before a new batch was fetched and
validated). The bookkeeping (does a table exist, which batch ids has it committed, the
snapshot a write made) reads table metadata through pyiceberg on the same catalog: one
metadata file per table, no Spark job, no data file opened.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd

from lakehouse.contracts import Contract
from lakehouse.contracts.derive import (AUDIT_COLUMNS, QUARANTINE_COLUMNS, WAP_PROPERTY, audit_ddl,
                                        quarantine_ddl, raw_ddl, spark_schema, struct_type)
from lakehouse.errors import LakehouseError
from lakehouse.ingest.fetch import Batch, FetchError, Fetched, PayloadError, fetch, parse_envelope
from lakehouse.ingest.validate import Quarantined, Validation, validate_rows
from lakehouse.settings import Settings
from lakehouse.spark import SparkUnavailable

KEY_PROP = "lakehouse.batch-key"
ID_PROP = "lakehouse.batch-id"
ROWS_IN_PROP, ROWS_VALID_PROP, ROWS_QUARANTINED_PROP = (
    "lakehouse.rows-in", "lakehouse.rows-valid", "lakehouse.rows-quarantined")
RAW_SNAPSHOT_PROP = "lakehouse.raw-snapshot-id"
MAX_BATCH = 10  # batches per cycle (platform.md section 4)


class ConservationError(LakehouseError):
    """rows_in != rows_valid + rows_quarantined: the job refuses to report success."""


@dataclass
class BatchResult:
    source: str
    group_number: int
    batch_number: int | None
    batch_id: str
    status: str              # committed | replayed | rejected | failed
    rows_in: int = 0
    rows_valid: int = 0
    rows_quarantined: int = 0
    snapshot_id: int | None = None
    checksum: str | None = None
    message: str = ""
    seconds: float = 0.0

    def line(self) -> str:
        b = f"batch {self.batch_number}" if self.batch_number is not None else "batch ?"
        counts = f"{self.rows_in} in, {self.rows_valid} valid, {self.rows_quarantined} quarantined"
        tail = f" snapshot {self.snapshot_id}" if self.snapshot_id else ""
        msg = f" - {self.message}" if self.message else ""
        return f"{self.source} group {self.group_number} {b}: {self.status}: {counts}{tail} ({self.seconds:.1f}s){msg}"


def failpoint(name: str) -> None:
    """Crash tests only: die by SIGKILL here when LAKEHOUSE_FAILPOINT names this point."""
    if os.environ.get("LAKEHOUSE_FAILPOINT") == name:
        say(f"failpoint {name}: killing this process with SIGKILL")
        os.kill(os.getpid(), signal.SIGKILL)


def now_utc() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class SharedSpark:
    """One Spark Connect session for several ingestors, opened on first use only (a run that
    finds nothing new never opens one)."""

    def __init__(self, settings: Settings, name: str = "lakehouse-ingest"):
        self.settings, self.name, self.session = settings, name, None

    def get(self):
        if self.session is None:
            from lakehouse.spark import spark_session

            self.session = spark_session(self.settings, self.name)
        return self.session

    def stop(self) -> None:
        if self.session is not None:
            self.session.stop()
            self.session = None


class Ingestor:
    """One source; ingest as many batches as asked. `spark`: a session, a SharedSpark, or
    None (a session of its own, opened when first needed)."""

    def __init__(self, settings: Settings, contract: Contract, spark=None, *, timeout: float = 30,
                 attempts: int = 4, backoff: float = 1.0):
        self.settings = settings
        self.contract = contract
        self.cat = settings.catalog_name
        self.raw = f"{self.cat}.raw.{contract.table}"
        self.quarantine = f"{self.cat}.quarantine.{contract.table}"
        self.audit = f"{self.cat}.audit.ingestion_log"
        self.timeout, self.attempts, self.backoff = timeout, attempts, backoff
        self._spark = spark if spark is not None else SharedSpark(settings, f"ingest-{contract.id}")
        self._catalog = None

    @property
    def catalog(self):
        """pyiceberg on the same catalog, for metadata reads (read-only S3 user)."""
        if self._catalog is None:
            from lakehouse.catalog import catalog

            self._catalog = catalog(self.settings)
        return self._catalog

    def _ident(self, table: str) -> tuple[str, str]:
        return tuple(table.split(".")[1:])  # catalog.namespace.table -> (namespace, table)

    @property
    def spark(self):
        return self._spark.get() if isinstance(self._spark, SharedSpark) else self._spark

    def ensure_tables(self) -> None:
        """Create the source's raw and quarantine tables and the audit log if missing, and
        turn write-audit-publish on where an older version created them without it (the
        checks read catalog metadata; only a change costs a Spark statement)."""
        for table, ddl in ((self.raw, raw_ddl(self.contract, self.cat)),
                           (self.quarantine, quarantine_ddl(self.contract, self.cat)),
                           (self.audit, audit_ddl(self.cat))):
            if not self.catalog.table_exists(self._ident(table)):
                self.spark.sql(ddl)  # IF NOT EXISTS: a concurrent creator is harmless
            elif self.catalog.load_table(self._ident(table)).properties.get(WAP_PROPERTY) != "true":
                self.spark.sql(f"ALTER TABLE {table} SET TBLPROPERTIES ('{WAP_PROPERTY}'='true')")

    # ---- exactly-once bookkeeping ------------------------------------------------------
    def _snapshots(self, table: str, key: str):
        """The published snapshots of `table` (current metadata, never cached) carrying
        batch key `key`."""
        return list(self._commits(table, key)[2].values())

    def _commits(self, table: str, key: str) -> tuple[dict[str, int], dict[str, int], dict]:
        """(published, staged, published snapshots): batch id -> snapshot id of the writes
        in `table` that carry batch key `key`, split into those readers see (the current
        snapshot's ancestors) and those staged by write-audit-publish and not published.
        A staged write published by cherry-pick (another commit came first) is found
        through the published snapshot's `published-wap-id`."""
        meta = self.catalog.load_table(self._ident(table)).metadata
        by_id = {snap.snapshot_id: snap for snap in meta.snapshots}
        ancestry, sid = [], meta.current_snapshot_id
        while sid is not None and sid in by_id:
            ancestry.append(by_id[sid])
            sid = by_id[sid].parent_snapshot_id
        current = {snap.snapshot_id for snap in ancestry}
        published: dict[str, int] = {}
        staged: dict[str, int] = {}
        snaps: dict[str, object] = {}
        prefix = f"{key}#"
        for snap in meta.snapshots:
            summary = snap.summary
            if summary is None or summary.get(KEY_PROP) != key:
                continue
            batch_id = summary.get(ID_PROP)
            if snap.snapshot_id in current:
                published[batch_id], snaps[batch_id] = snap.snapshot_id, snap
            else:
                staged.setdefault(batch_id, snap.snapshot_id)
        for snap in ancestry:
            wap = snap.summary.get("published-wap-id") if snap.summary else None
            if wap and wap.startswith(prefix):
                batch_id = wap[len(prefix):]
                source = by_id.get(int(snap.summary.get("source-snapshot-id") or -1))
                published[batch_id] = snap.snapshot_id
                snaps[batch_id] = source if source is not None else snap  # it carries the properties
        for batch_id in published:
            staged.pop(batch_id, None)
        return published, staged, snaps

    def committed_ids(self, table: str, key: str) -> dict[str, int]:
        """batch id -> snapshot id of the published commits in `table` carrying batch key `key`."""
        return self._commits(table, key)[0]

    def logged_ids(self, group: int, batch_number: int) -> set[str]:
        """Batch ids audit.ingestion_log holds as committed for this batch key. Table
        maintenance expires old snapshots and their properties; these rows stay."""
        from pyiceberg.expressions import And, EqualTo

        table = self.catalog.load_table(self._ident(self.audit))
        rows = table.scan(row_filter=And(EqualTo("source", self.contract.id), EqualTo("group_number", group),
                                         EqualTo("batch_number", batch_number), EqualTo("status", "committed")),
                          selected_fields=("batch_id",)).to_arrow()
        return set(rows.column("batch_id").to_pylist())

    def _replayed(self, batch: Batch, batch_id: str, key: str, checksum: str) -> BatchResult:
        """The result of a batch already committed, from its audit commit's properties."""
        props = next((snap.summary for snap in self._snapshots(self.audit, key)
                      if snap.summary.get(ID_PROP) == batch_id), {})
        names = (ROWS_IN_PROP, ROWS_VALID_PROP, ROWS_QUARANTINED_PROP, RAW_SNAPSHOT_PROP)
        values = [props.get(p) for p in names]
        if values[0] is None:  # logged before the counts rode along: read the audit row itself
            from pyiceberg.expressions import And, EqualTo

            table = self.catalog.load_table(self._ident(self.audit))
            rows = table.scan(row_filter=And(EqualTo("batch_id", batch_id), EqualTo("status", "committed")),
                              selected_fields=("rows_in", "rows_valid", "rows_quarantined", "snapshot_id"),
                              ).to_arrow().to_pylist()
            values = list(rows[0].values()) if rows else [0, 0, 0, None]
        counts = [int(v or 0) for v in values[:3]]
        snapshot = int(values[3]) if values[3] is not None else None
        return BatchResult(self.contract.id, batch.group_number, batch.batch_number, batch_id, "replayed",
                           *counts, snapshot, checksum, "already ingested: nothing written")

    @contextmanager
    def batch_lock(self, key: str):
        """This batch (one at a time, platform-wide: a replay is decided once), and the
        three tables it appends to, shared with other writers and excluding their
        maintenance (lakehouse.locks)."""
        from contextlib import ExitStack

        from lakehouse import locks

        with ExitStack() as stack:
            stack.enter_context(locks.hold(self.settings, f"ingest:{key}", purpose=f"ingest {key}", say=say))
            for table in (self.raw, self.quarantine, self.audit):
                stack.enter_context(locks.hold(self.settings, "table:" + ".".join(self._ident(table)),
                                               shared=True, purpose=f"ingest {key}", say=say))
            yield

    # ---- one batch ---------------------------------------------------------------------
    def fetch(self, group: int) -> Fetched:
        return fetch(self.settings.api_url, self.contract.source.path, group, source=self.contract.id,
                     timeout=self.timeout, attempts=self.attempts, backoff=self.backoff)

    def ingest(self, group: int, fetched: Fetched | None = None) -> BatchResult:
        """Fetch (unless given) and ingest the batch the API publishes now."""
        started = now_utc()
        t0 = time.monotonic()
        src = self.contract.id
        try:
            fetched = fetched or self.fetch(group)
        except FetchError as exc:
            result = self.record_fetch_failure(group, exc, started)
            result.seconds = time.monotonic() - t0
            return result
        try:
            batch = parse_envelope(fetched.body, source=src, group=group)
        except PayloadError as exc:
            result = self._reject_payload(group, exc.batch_number, fetched, exc.message, started)
            result.seconds = time.monotonic() - t0
            return result
        from pyspark.errors import PySparkException

        where = f"{src} group {group} batch {batch.batch_number}"
        try:
            result = self._ingest_batch(batch, fetched, started)
        except SparkUnavailable as exc:
            raise SparkUnavailable(f"{where}: {exc.message}", exc.hint) from exc
        except PySparkException as exc:  # the engine failed mid-batch (server killed, restarted)
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise SparkUnavailable(
                f"{where}: the Spark Connect server failed during the batch ({first}); each table "
                "is at its old snapshot or has the whole batch, never part of it",
                "rerun the ingest once `lakehouse status` shows spark-connect healthy: it completes "
                "the batch exactly once (`lakehouse logs spark-connect` shows the server's side)") from exc
        result.seconds = time.monotonic() - t0
        return result

    def record_fetch_failure(self, group: int, exc: FetchError, started: datetime) -> BatchResult:
        """No payload arrived: one `failed` audit row with the error, nothing else written."""
        src = self.contract.id
        result = BatchResult(src, group, None, f"{src}/g{group}/failed/{started.isoformat()}",
                             "failed", message=exc.message + (f" ({exc.hint})" if exc.hint else ""))
        self._write_audit(result, started)
        return result

    def _key(self, group: int, batch_number: int | None, checksum: str) -> tuple[str, str]:
        b = batch_number if batch_number is not None else "unparsed"
        key = f"{self.contract.id}/g{group}/b{b}"
        return key, f"{key}/{checksum[:16]}"

    def _ingest_batch(self, batch: Batch, fetched: Fetched, started: datetime) -> BatchResult:
        key, batch_id = self._key(batch.group_number, batch.batch_number, fetched.checksum)
        with self.batch_lock(key):
            seen = {t: self.committed_ids(t, key) for t in (self.raw, self.quarantine, self.audit)}
            for logged in self.logged_ids(batch.group_number, batch.batch_number) - set(seen[self.audit]):
                seen[self.audit][logged] = None  # its snapshot was expired by maintenance
            other = {i for ids in seen.values() for i in ids if i != batch_id}
            if other:
                return self._reject_payload(
                    batch.group_number, batch.batch_number, fetched,
                    f"batch {batch.batch_number} of group {batch.group_number} was already ingested with "
                    f"another payload ({', '.join(sorted(other))}); this payload differs (checksum "
                    f"{fetched.checksum[:16]}) and was quarantined whole, not merged", started, locked=True)
            if batch_id in seen[self.audit]:
                return self._replayed(batch, batch_id, key, fetched.checksum)
            validation = validate_rows(self.contract, batch.data)
            if validation.rows_valid + validation.rows_quarantined != validation.rows_in:
                raise ConservationError(f"{batch_id}: {validation.rows_in} in != {validation.rows_valid} valid + "
                                        f"{validation.rows_quarantined} quarantined")
            ingested_at = now_utc()
            snapshot = seen[self.raw].get(batch_id)
            failpoint("before-raw-commit")
            if snapshot is None and validation.rows_valid:
                snapshot = self._write_raw(batch, batch_id, key, validation, ingested_at)
            failpoint("after-raw-commit")
            if batch_id not in seen[self.quarantine] and validation.rows_quarantined:
                self._write_quarantine(batch.group_number, batch.batch_number, batch_id, key,
                                       validation.quarantined, ingested_at)
            result = BatchResult(self.contract.id, batch.group_number, batch.batch_number, batch_id,
                                 "committed", validation.rows_in, validation.rows_valid,
                                 validation.rows_quarantined, snapshot, fetched.checksum)
            self._write_audit(result, started, key)
            return result

    def _reject_payload(self, group: int, batch_number: int | None, fetched: Fetched, message: str,
                        started: datetime, locked: bool = False) -> BatchResult:
        """Quarantine the whole body (once per checksum) and record a rejected batch."""
        key, batch_id = self._key(group, batch_number, fetched.checksum)
        reject_key = f"{key}/rejected/{fetched.checksum[:16]}"

        def write() -> BatchResult:
            result = BatchResult(self.contract.id, group, batch_number, batch_id, "rejected",
                                 checksum=fetched.checksum, message=message)
            if not self.committed_ids(self.quarantine, reject_key):
                whole = Quarantined(-1, fetched.body.decode("utf-8", errors="replace"), [message])
                self._write_quarantine(group, batch_number, batch_id, reject_key, [whole], now_utc(),
                                       whole_payload=True)
            if not self.committed_ids(self.audit, reject_key):
                self._write_audit(result, started, reject_key)
            else:
                result.message += " (already recorded)"
            return result

        if locked:
            return write()
        with self.batch_lock(reject_key):
            return write()

    # ---- writes (one Iceberg commit each, tagged with the batch) ------------------------
    def _append(self, df, table: str, key: str, batch_id: str, **props: str) -> None:
        """Write-audit-publish: stage the rows under the WAP id `<key>#<batch id>` (unless a
        dead run staged them already), then publish. Iceberg refuses a second publish of
        one WAP id, so a write the server finished for a dead client is never doubled."""
        published, staged, _ = self._commits(table, key)
        if batch_id in published:
            return
        wap_id = f"{key}#{batch_id}"
        if batch_id not in staged:
            writer = (df.writeTo(table)
                        .option(f"snapshot-property.{KEY_PROP}", key)
                        .option(f"snapshot-property.{ID_PROP}", batch_id))
            for name, value in props.items():
                writer = writer.option(f"snapshot-property.{name}", value)
            self.spark.conf.set("spark.wap.id", wap_id)
            try:
                writer.append()
            finally:
                self.spark.conf.unset("spark.wap.id")
        failpoint(f"staged-{table.split('.', 1)[1]}")
        namespace, name = self._ident(table)
        try:
            self.spark.sql(f"CALL {self.cat}.system.publish_changes(table => '{namespace}.{name}', "
                           f"wap_id => '{wap_id}')").collect()
        except Exception as exc:  # a pyspark error carrying the JVM's exception
            if "DuplicateWAPCommitException" not in str(exc):
                raise
            say(f"{table}: {batch_id} was published already (by an earlier run's write); not again")

    def _write_raw(self, batch: Batch, batch_id: str, key: str, v: Validation, ingested_at: datetime) -> int:
        pdf = v.valid.drop(columns=["_row_index"]).copy()
        pdf["_batch_id"] = batch_id
        pdf["_source"] = self.contract.id
        pdf["_group_number"] = pd.Series([batch.group_number] * len(pdf), dtype="int32")
        pdf["_batch_number"] = pd.Series([batch.batch_number] * len(pdf), dtype="int32")
        pdf["_ingested_at"] = pd.Series([ingested_at] * len(pdf), dtype="datetime64[us]")
        schema = spark_schema(self.contract)
        df = self.spark.createDataFrame(pdf[[f.name for f in schema.fields]], schema=schema)
        self._append(df, self.raw, key, batch_id)
        return self.committed_ids(self.raw, key)[batch_id]

    def _write_quarantine(self, group: int, batch_number: int | None, batch_id: str, key: str,
                          rows: list[Quarantined], ingested_at: datetime, whole_payload: bool = False) -> None:
        schema = struct_type(QUARANTINE_COLUMNS)
        data = [(batch_id, self.contract.id, group, batch_number, None if whole_payload else q.index,
                 q.raw, q.reasons, ingested_at) for q in rows]
        self._append(self.spark.createDataFrame(data, schema), self.quarantine, key, batch_id)

    def _write_audit(self, r: BatchResult, started: datetime, key: str | None = None) -> None:
        schema = struct_type(AUDIT_COLUMNS)
        row = [(r.batch_id, r.source, r.group_number, r.batch_number, r.rows_in, r.rows_valid,
                r.rows_quarantined, r.snapshot_id, r.checksum, started, now_utc(), r.status, r.message)]
        # The counts ride along as snapshot properties too, so a replay answers from metadata.
        props = {ROWS_IN_PROP: str(r.rows_in), ROWS_VALID_PROP: str(r.rows_valid),
                 ROWS_QUARANTINED_PROP: str(r.rows_quarantined)}
        if r.snapshot_id is not None:
            props[RAW_SNAPSHOT_PROP] = str(r.snapshot_id)
        self._append(self.spark.createDataFrame(row, schema), self.audit, key or r.batch_id, r.batch_id, **props)

    # ---- several batches -----------------------------------------------------------------
    def current_batch(self, group: int) -> tuple[Fetched, Batch | None]:
        fetched = self.fetch(group)
        try:
            return fetched, parse_envelope(fetched.body, source=self.contract.id, group=group)
        except PayloadError:
            return fetched, None

    def ingest_batch_number(self, group: int, wanted: int, *, poll: float = 5.0,
                            timeout: float = 900.0) -> BatchResult:
        """Wait until the API publishes batch `wanted`, then ingest it."""
        deadline = time.monotonic() + timeout
        while True:
            fetched, batch = self.current_batch(group)
            if batch is None or batch.batch_number == wanted:
                return self.ingest(group, fetched)
            if batch.batch_number > wanted:
                raise LakehouseError(f"{self.contract.id} group {group}: batch {wanted} is no longer served "
                                     f"(the API is at batch {batch.batch_number})",
                                     "the protocol serves only the newest batch; ingest it without --batch")
            if time.monotonic() > deadline:
                raise LakehouseError(f"{self.contract.id} group {group}: batch {wanted} not published within "
                                     f"{timeout:g}s (API at batch {batch.batch_number})")
            time.sleep(poll)


def open_ingestors(settings: Settings, contracts: list[Contract], **options) -> list[Ingestor]:
    """One Ingestor per source, sharing one Spark Connect session (opened when first
    needed), their tables created if missing. `options` (timeout, attempts, backoff) go to
    every Ingestor. Close them with close_ingestors."""
    shared = SharedSpark(settings)
    ingestors = [Ingestor(settings, contract, shared, **options) for contract in contracts]
    for ing in ingestors:
        ing.ensure_tables()
    return ingestors


def close_ingestors(ingestors: list[Ingestor]) -> None:
    """End the Spark Connect session the ingestors shared, if one was opened."""
    for ing in ingestors:
        if isinstance(ing._spark, SharedSpark):
            ing._spark.stop()


def ensure_source_tables(settings: Settings, contracts: list[Contract]) -> list[str]:
    """Every contract's raw and quarantine tables and the audit log, created (empty) where
    missing, so dbt can build before every source has delivered a batch. A Spark session opens only
    when a table is missing."""
    created: list[str] = []
    shared = SharedSpark(settings, "lakehouse-init")
    try:
        for contract in contracts:
            ing = Ingestor(settings, contract, shared)
            missing = [t for t in (ing.raw, ing.quarantine, ing.audit) if not ing.catalog.table_exists(ing._ident(t))]
            if missing:
                ing.ensure_tables()
                created += [t for t in missing if t not in created]
    finally:
        shared.stop()
    return created


def ingest_cycles(ingestors: list[Ingestor], group: int, *, until: int = MAX_BATCH, poll: float = 5.0,
                  timeout: float = 3600.0, report=print) -> list[BatchResult]:
    """Ingest each source's batches as the API publishes them, polling the sources in turn
    (the protocol serves only the newest batch, so they advance together), until every
    source has reached batch `until`. Batches the API published and withdrew between two
    polls are reported as missed, never skipped silently.
    """
    results: list[BatchResult] = []
    seen: dict[str, set[int]] = {i.contract.id: set() for i in ingestors}
    deadline = time.monotonic() + timeout
    while True:
        for ing in ingestors:
            src = ing.contract.id
            if seen[src] and max(seen[src]) >= until:
                continue
            try:
                fetched, batch = ing.current_batch(group)
            except FetchError as exc:
                result = ing.record_fetch_failure(group, exc, now_utc())
                report(result.line())
                results.append(result)
                seen[src].add(until)  # give up on this source; the error is recorded
                continue
            number = batch.batch_number if batch else None
            if number is not None and number in seen[src]:
                continue
            result = ing.ingest(group, fetched)
            results.append(result)
            prefix = f"[{number}/{until}] " if number else ""
            report(prefix + result.line())
            if number is None:
                seen[src].add(until)
                continue
            missed = [b for b in range(max(seen[src], default=0) + 1, number)]
            if missed:
                report(f"  WARNING {src} group {group}: missed batch(es) {missed}: the API published "
                       "the next one before they were fetched (poll more often)")
                results.extend(BatchResult(src, group, b, f"{src}/g{group}/b{b}/missed", "failed",
                                           message="missed: not fetched before the API moved on")
                               for b in missed)
            seen[src].add(number)
        if all(s and max(s) >= until for s in seen.values()):
            return results
        if time.monotonic() > deadline:
            raise LakehouseError(f"group {group}: batch {until} not reached within {timeout:g}s "
                                 f"({ {k: sorted(v) for k, v in seen.items()} })",
                                 "is the API's publication period longer than expected?")
        time.sleep(poll)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
