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
import re
import signal
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson
import requests

from lakehouse.contracts import Contract
from lakehouse.contracts.derive import (AUDIT_COLUMNS, QUARANTINE_COLUMNS, RAW_METADATA, WAP_PROPERTY, audit_ddl,
                                        columns_sql, quarantine_ddl, raw_ddl, spark_schema,
                                        struct_type)
from lakehouse.contracts.evolution import VERSION_PROP, compare, properties_sql, refusal, table_state
from lakehouse.contracts.model import ContractError
from lakehouse.errors import LakehouseError
from lakehouse.ingest.cycles import Delivered, batch_key, decide
from lakehouse.ingest.fetch import (Batch, FetchError, Fetched, PayloadError, declared_cycle, endpoint_headers,
                                    endpoint_url, fetch,
                                    parse_envelope)
from lakehouse.ingest.quality import gate
from lakehouse.ingest.validate import Quarantined, Validation, validate_rows
from lakehouse.settings import Settings
from lakehouse.spark import SparkUnavailable

KEY_PROP = "lakehouse.batch-key"
ID_PROP = "lakehouse.batch-id"
ROWS_IN_PROP, ROWS_VALID_PROP, ROWS_QUARANTINED_PROP = (
    "lakehouse.rows-in", "lakehouse.rows-valid", "lakehouse.rows-quarantined")
RAW_SNAPSHOT_PROP = "lakehouse.raw-snapshot-id"
PAYLOAD_PROP, CHECKSUM_PROP = "lakehouse.payload-checksum", "lakehouse.checksum"
# Appends of fewer rows skip Iceberg's shuffle by partition: 10k rows commit in 1.5 s instead
# of 1.7 s without it, while 100k and 1M rows were slower without it (make bench-ingest,
# 2026-11-29: 5.3 s against 4.0 s, 43 s against 36 s), the shuffle spreading the write.
SHUFFLE_FROM_ROWS = 50_000
# From this many valid rows a batch reaches the server as Parquet files in the staging folder
# both see (settings.spark_staging_path), not as a local relation in the plan: the driver
# turns a local relation into rows on one thread (1M rows: 15 s), while files are read by
# every executor core (1M rows: 1.4 s; docs/ingestion.md, "Large batches").
STAGE_FROM_ROWS = 50_000
STAGED_KEPT_SECONDS = 86_400  # a staged folder older than this was left by a killed client
MAX_BATCH = 10  # batches per cycle of the bundled simulator (platform.md section 4)
# A committed batch's key (lakehouse.ingest.cycles.batch_key); rejected and failed keys differ.
_KEY = re.compile(r"^(?P<source>[a-z][a-z0-9_]*)/g(?P<group>\d+)/(?:c(?P<cycle>\d+)/)?b(?P<batch>\d+)$")


class ConservationError(LakehouseError):
    """rows_in != rows_valid + rows_quarantined: the job refuses to report success."""


@dataclass
class BatchResult:
    source: str
    group_number: int
    batch_number: int | None
    batch_id: str
    status: str              # committed | held | replayed | rejected | failed | missed | released
    rows_in: int = 0
    rows_valid: int = 0
    rows_quarantined: int = 0
    snapshot_id: int | None = None
    checksum: str | None = None
    message: str = ""
    seconds: float = 0.0
    cycle: int | None = None
    cycle_source: str | None = None   # declared | inferred
    payload_checksum: str | None = None
    missed: list[str] = field(default_factory=list)  # batch ids recorded as missed with this batch
    # seconds per step of this run: fetch, parse, validate, raw, quarantine, audit (the
    # writes include their exactly-once checks); where a slow batch spent its time
    stages: dict[str, float] = field(default_factory=dict)
    # the contract's GE suite on the batch's well-typed rows, in GE's result layout
    # (lakehouse.ingest.validate.suite_result); kept in audit.ingestion_log.expectation_results
    expectations: dict = field(default_factory=dict)
    # the quality gate's verdict (lakehouse.ingest.quality.gate); audit.ingestion_log.gate_results
    gate: dict = field(default_factory=dict)
    decided_by: str | None = None  # released / rejected: who decided

    def line(self) -> str:
        b = f"batch {self.batch_number}" if self.batch_number is not None else "batch ?"
        if self.cycle is not None:
            b = f"cycle {self.cycle} {b}"
        counts = f"{self.rows_in} in, {self.rows_valid} valid, {self.rows_quarantined} quarantined"
        tail = f" snapshot {self.snapshot_id}" if self.snapshot_id else ""
        msg = f" - {self.message}" if self.message else ""
        return f"{self.source} group {self.group_number} {b}: {self.status}: {counts}{tail} ({self.seconds:.1f}s){msg}"


def held_branch(batch_id: str) -> str:
    """The name of the raw table's branch that keeps a held batch's staged write."""
    return "held-" + re.sub(r"[^A-Za-z0-9_-]", "-", batch_id)


def failpoint(name: str) -> None:
    """Crash tests only: die by SIGKILL here when LAKEHOUSE_FAILPOINT names this point."""
    if os.environ.get("LAKEHOUSE_FAILPOINT") == name:
        say(f"failpoint {name}: killing this process with SIGKILL")
        os.kill(os.getpid(), signal.SIGKILL)


def now_utc() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class SharedSpark:
    """One Spark Connect session for several ingestors, opened on first use only (a run that
    finds nothing new never opens one). `open_soon()` opens it in the background once a
    batch is known to be new, so the round trips overlap the checks that come before the
    first write."""

    def __init__(self, settings: Settings, name: str = "lakehouse-ingest"):
        self.settings, self.name, self.session = settings, name, None
        self._opening: Future | None = None

    def _open(self):
        from lakehouse.spark import spark_session

        client_ready()
        return spark_session(self.settings, self.name)

    def open_soon(self) -> None:
        if self.session is None and self._opening is None:
            pool = ThreadPoolExecutor(1, thread_name_prefix="spark-open")
            self._opening = pool.submit(self._open)
            pool.shutdown(wait=False)  # the thread ends once the session is open

    def get(self):
        if self.session is None:
            opening, self._opening = self._opening, None
            self.session = opening.result() if opening is not None else self._open()
        return self.session

    def stop(self, quiet: bool = False) -> None:
        opening, self._opening = self._opening, None
        if opening is not None and self.session is None:
            try:
                self.session = opening.result()
            except Exception:  # it never opened: nothing to release
                pass
        if self.session is not None:
            from lakehouse.spark import stop_session

            try:
                stop_session(self.session)
            except Exception:  # a session the server no longer knows can't be released
                if not quiet:
                    raise
            self.session = None


_warming: threading.Thread | None = None


def warm_client() -> None:
    """Import the Connect client (pyspark's SQL, gRPC and Arrow modules: most of a second)
    in the background while the batch is fetched and checked. Nothing contacts the server.
    Until `client_ready()`, this process imports nothing from pyspark elsewhere, so two
    threads never import the same package at once."""
    global _warming
    if _warming is not None:
        return

    def imports() -> None:
        import pyspark.errors  # noqa: F401
        import pyspark.sql.connect.dataframe  # noqa: F401
        import pyspark.sql.connect.functions  # noqa: F401
        import pyspark.sql.connect.session  # noqa: F401

    _warming = threading.Thread(target=imports, name="spark-client-imports", daemon=True)
    _warming.start()


def client_ready() -> None:
    """Wait for `warm_client()`'s imports, if they were started."""
    if _warming is not None:
        _warming.join()


def is_spark_error(exc: BaseException) -> bool:
    """An error raised by pyspark (checked by class, without importing pyspark)."""
    return any(c.__name__ == "PySparkException" and c.__module__.startswith("pyspark.errors")
               for c in type(exc).__mro__)


def session_lost(exc: Exception) -> bool:
    """A Connect error saying the server no longer knows this client's session."""
    text = str(exc)
    return "SESSION_CHANGED" in text or "NO_ACTIVE_SESSION" in text or "SESSION_NOT_FOUND" in text


def utc_event_times(table):
    """The Arrow rows with their times (`_event_time` and the contract's timestamp fields)
    marked as UTC instants (they are UTC already), which Spark reads as TIMESTAMP whether
    they arrive in the plan or as Parquet."""
    import pyarrow as pa

    for at, column in enumerate(table.schema):
        if pa.types.is_timestamp(column.type) and column.type.tz is None:
            table = table.set_column(at, column.name, table.column(at).cast(pa.timestamp("us", tz="UTC")))
    return table


@contextmanager
def staged_parquet(folder, table, batch_id: str):
    """The valid rows (an Arrow table) as Parquet files in `folder` (one per core, so every
    executor core reads one), removed when the block ends; yields their file:// URLs, or []
    without a folder."""
    if folder is None:
        yield []
        return
    import shutil
    import uuid

    import pyarrow.parquet as pq

    from lakehouse.stack.checks import private_dir

    # rows are data: each folder this creates is 0700 and each file 0600 (the server runs
    # as the same OS user), like everything else under the data folder
    for level in reversed([p for p in (folder, *folder.parents) if not p.exists()]):
        private_dir(level)
    # a client killed during its write leaves its folder behind (the server may still be
    # reading it then); a day later nobody is
    for left in folder.iterdir():
        try:
            if left.is_dir() and time.time() - left.stat().st_mtime > STAGED_KEPT_SECONDS:
                shutil.rmtree(left, ignore_errors=True)
        except FileNotFoundError:  # another client swept it first
            pass
    where = private_dir(folder / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', batch_id)}.{uuid.uuid4().hex[:8]}")
    try:
        parts = max(1, min(os.cpu_count() or 1, table.num_rows // STAGE_FROM_ROWS))
        step = -(-table.num_rows // parts)
        paths = []
        for i in range(parts):
            path = where / f"part-{i}.parquet"
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
                pq.write_table(table.slice(i * step, step), fh, compression="none")
            paths.append(path.resolve().as_uri())
        yield paths
    finally:
        shutil.rmtree(where, ignore_errors=True)


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
        self._stages: dict[str, float] = {}
        self.headers = endpoint_headers(contract)  # an auth variable not set fails here, before any write

    @contextmanager
    def _timed(self, stage: str):
        t = time.monotonic()
        try:
            yield
        finally:
            self._stages[stage] = round(self._stages.get(stage, 0.0) + time.monotonic() - t, 3)

    def _done(self, result: BatchResult, t0: float) -> BatchResult:
        result.seconds = time.monotonic() - t0
        result.stages = dict(self._stages)
        return result

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
        checks read catalog metadata; only a change costs a Spark statement). The raw table
        follows its contract (schema evolution, `evolve_raw`)."""
        for table, ddl in ((self.raw, raw_ddl(self.contract, self.cat)),
                           (self.quarantine, quarantine_ddl(self.contract, self.cat)),
                           (self.audit, audit_ddl(self.cat))):
            if not self.catalog.table_exists(self._ident(table)):
                self.spark.sql(ddl)  # IF NOT EXISTS: a concurrent creator is harmless
                continue
            existing = self.catalog.load_table(self._ident(table))
            if existing.properties.get(WAP_PROPERTY) != "true":
                self.spark.sql(f"ALTER TABLE {table} SET TBLPROPERTIES ('{WAP_PROPERTY}'='true')")
            if table == self.raw:
                self.evolve_raw(existing)
                continue
            # Columns added since the table was made (the cycle's): Iceberg schema evolution,
            # no file rewritten; older rows read them as null.
            have = {f.name for f in existing.schema().fields}
            columns = {self.quarantine: QUARANTINE_COLUMNS, self.audit: AUDIT_COLUMNS}[table]
            missing = [c for c in columns if c[0] not in have]
            if missing:
                self.spark.sql(f"ALTER TABLE {table} ADD COLUMNS ({columns_sql(missing)})")

    def raw_changes(self, table=None) -> tuple[list, dict, list]:
        """The contract's changes to the deployed raw table, its properties, and the
        ingestion metadata columns it lacks (added since it was made)."""
        columns, props = table_state(table or self.catalog.load_table(self._ident(self.raw)))
        missing = [c for c in RAW_METADATA if c[0] not in columns]
        return compare(self.contract, columns, props, self.raw), props, missing

    def evolve_raw(self, table=None) -> list:
        """Bring the raw table in step with its contract before the next append: additive
        changes always; breaking ones only under a new major version (else a ContractError,
        and nothing is changed). Under a lock, so two ingests never alter one table twice."""
        changes, props, missing = self.raw_changes(table)
        if not changes and not missing and props.get(VERSION_PROP) == self.contract.version:
            return []
        from lakehouse import locks

        with locks.hold(self.settings, f"evolve:{self.raw}", purpose=f"evolve {self.raw}", say=say):
            changes, props, missing = self.raw_changes()  # again, under the lock: another run may have done it
            why = refusal(self.contract, changes, props)
            if why:
                raise ContractError(f"{self.raw}: {why}; nothing was changed or ingested",
                                    "see docs/contracts.md, \"Schema evolution\"; `lakehouse contracts diff` "
                                    "lists every difference")
            if missing:  # the platform's own columns, added since the table was made
                self.spark.sql(f"ALTER TABLE {self.raw} ADD COLUMNS ({columns_sql(missing)})")
            for change in changes:
                if change.sql:
                    say(f"{self.raw}: {change.line()}")
                    self.spark.sql(change.sql)
            self.spark.sql(properties_sql(self.contract, self.raw))
        return changes

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

    def history(self, group: int) -> list[Delivered]:
        """The batches this source and group committed, for the cycle decision. Read from
        the audit table's published snapshots (their batch keys hold cycle and number: no
        data file is opened, so the cost does not grow with the rows). Once maintenance
        has expired every snapshot of the group, from the audit rows, which stay."""
        meta = self.catalog.load_table(self._ident(self.audit)).metadata
        by_id = {snap.snapshot_id: snap for snap in meta.snapshots}
        found: dict[str, Delivered] = {}
        sid = meta.current_snapshot_id
        while sid is not None and sid in by_id:
            snap = by_id[sid]
            sid = snap.parent_snapshot_id
            summary = snap.summary
            if summary is None:
                continue
            if summary.get("published-wap-id") and summary.get("source-snapshot-id"):
                summary = getattr(by_id.get(int(summary["source-snapshot-id"])), "summary", None) or summary
            parsed = _KEY.match(summary.get(KEY_PROP) or "")
            if parsed is None or parsed["source"] != self.contract.id or int(parsed["group"]) != group:
                continue
            batch_id = summary.get(ID_PROP)
            found[batch_id] = Delivered(int(parsed["cycle"] or 1), int(parsed["batch"]), batch_id,
                                        summary.get(PAYLOAD_PROP), summary.get(CHECKSUM_PROP))
        if found:
            return list(found.values())
        from pyiceberg.expressions import And, EqualTo, In

        table = self.catalog.load_table(self._ident(self.audit))
        rows = table.scan(row_filter=And(EqualTo("source", self.contract.id), EqualTo("group_number", group),
                                         In("status", ["committed", "held"])),
                          selected_fields=("batch_id", "batch_number", "cycle", "payload_checksum", "checksum"),
                          ).to_arrow().to_pylist()
        return [Delivered(r["cycle"] or 1, r["batch_number"], r["batch_id"], r["payload_checksum"], r["checksum"])
                for r in rows if r["batch_number"] is not None]

    def _replayed(self, batch: Batch, batch_id: str, key: str, checksum: str, cycle: int) -> BatchResult:
        """The result of a batch already committed, from its audit commit's properties."""
        props = next((snap.summary for snap in self._snapshots(self.audit, key)
                      if snap.summary.get(ID_PROP) == batch_id), {})
        names = (ROWS_IN_PROP, ROWS_VALID_PROP, ROWS_QUARANTINED_PROP, RAW_SNAPSHOT_PROP)
        values = [props.get(p) for p in names]
        if values[0] is None:  # logged before the counts rode along: read the audit row itself
            from pyiceberg.expressions import And, EqualTo, In

            table = self.catalog.load_table(self._ident(self.audit))
            rows = table.scan(row_filter=And(EqualTo("batch_id", batch_id), In("status", ["committed", "held"])),
                              selected_fields=("rows_in", "rows_valid", "rows_quarantined", "snapshot_id"),
                              ).to_arrow().to_pylist()
            values = list(rows[0].values()) if rows else [0, 0, 0, None]
        counts = [int(v or 0) for v in values[:3]]
        snapshot = int(values[3]) if values[3] is not None else None
        return BatchResult(self.contract.id, batch.group_number, batch.batch_number, batch_id, "replayed",
                           *counts, snapshot, checksum, "already ingested: nothing written", cycle=cycle)

    @contextmanager
    def batch_lock(self, key: str):
        """This source and group (one batch at a time, platform-wide: its cycle, and whether
        it is a replay, are decided once), and the three tables it appends to, shared with
        other writers and excluding their maintenance (lakehouse.locks)."""
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
        return fetch(endpoint_url(self.settings, self.contract), group, source=self.contract.id,
                     headers=self.headers, timeout=self.timeout, attempts=self.attempts, backoff=self.backoff)

    def ingest(self, group: int, fetched: Fetched | None = None) -> BatchResult:
        """Fetch (unless given) and ingest the batch the API publishes now."""
        started = now_utc()
        t0 = time.monotonic()
        src = self.contract.id
        self._stages = {}
        try:
            with self._timed("fetch"):
                fetched = fetched or self.fetch(group)
        except FetchError as exc:
            return self._done(self.record_fetch_failure(group, exc, started), t0)
        cycle_spec = self.contract.source.cycle
        try:
            with self._timed("parse"):
                batch = parse_envelope(fetched.body, source=src, group=group,
                                       cycle_field=cycle_spec.name if cycle_spec.from_ == "field" else None)
            declared, note = batch.declared_cycle, ""
            if cycle_spec.from_ == "header":
                value = fetched.headers.get(cycle_spec.name.lower())
                if value is None:
                    note = f"no {cycle_spec.name} header in the response: cycle inferred"
                else:
                    declared = declared_cycle(value, where=f"header {cycle_spec.name}", source=src, group=group,
                                              batch_number=batch.batch_number)
            elif cycle_spec.from_ == "field" and declared is None:
                note = f"no {cycle_spec.name!r} field in the envelope: cycle inferred"
        except PayloadError as exc:
            return self._done(self._reject_payload(group, exc.batch_number, None, fetched, exc.message, started), t0)
        warm_client()  # a batch to decide on: import the Connect client meanwhile
        where = f"{src} group {group} batch {batch.batch_number}"
        try:
            try:
                result = self._ingest_batch(batch, fetched, started, declared, note)
            except Exception as exc:
                if not (is_spark_error(exc) and isinstance(self._spark, SharedSpark) and session_lost(exc)):
                    raise
                # The server restarted since this process opened its session (a long-running
                # --cycles run): open a new one and go again, which is safe (write-audit-publish).
                say(f"{where}: the Spark Connect server restarted; reconnecting and retrying the batch")
                self._spark.stop(quiet=True)
                result = self._ingest_batch(batch, fetched, started, declared, note)
        except SparkUnavailable as exc:
            raise SparkUnavailable(f"{where}: {exc.message}", exc.hint) from exc
        except Exception as exc:  # the engine failed mid-batch (server killed, restarted)
            if not is_spark_error(exc):
                raise
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise SparkUnavailable(
                f"{where}: the Spark Connect server failed during the batch ({first}); each table "
                "is at its old snapshot or has the whole batch, never part of it",
                "rerun the ingest once `lakehouse status` shows spark-connect healthy: it completes "
                "the batch exactly once (`lakehouse logs spark-connect` shows the server's side)") from exc
        return self._done(result, t0)

    def record_fetch_failure(self, group: int, exc: FetchError, started: datetime) -> BatchResult:
        """No payload arrived: one `failed` audit row with the error, nothing else written."""
        src = self.contract.id
        result = BatchResult(src, group, None, f"{src}/g{group}/failed/{started.isoformat()}",
                             "failed", message=exc.message + (f" ({exc.hint})" if exc.hint else ""))
        self._write_audit(result, started)
        return result

    def _ingest_batch(self, batch: Batch, fetched: Fetched, started: datetime, declared: int | None,
                      note: str = "") -> BatchResult:
        src, group, number = self.contract.id, batch.group_number, batch.batch_number
        with self.batch_lock(f"{src}/g{group}"):
            decision = decide(self.history(group), number, batch.payload_checksum, fetched.checksum,
                              self.contract.source.batches_per_cycle, declared)
            cycle = decision.cycle
            key = batch_key(src, group, cycle, number)
            batch_id = f"{key}/{batch.payload_checksum[:16]}"
            where = f"{src} group {group} cycle {cycle if cycle is not None else '?'} batch {number}"
            if decision.action == "replayed":
                done = decision.replay_of
                return self._replayed(batch, done.batch_id, batch_key(src, group, done.cycle, number),
                                      fetched.checksum, done.cycle)
            if decision.action == "rejected":
                conflicts = f" ({', '.join(decision.conflicts)})" if decision.conflicts else ""
                return self._reject_payload(
                    group, number, cycle, fetched,
                    f"{where}: {decision.reason}{conflicts}; the payload (checksum {batch.payload_checksum[:16]}) "
                    "was quarantined whole, not merged", started, locked=True, declared=declared)
            if isinstance(self._spark, SharedSpark):
                self._spark.open_soon()  # new data: overlap the session's round trips with the checks
            seen = {t: self.committed_ids(t, key) for t in (self.raw, self.quarantine)}
            other = {i for ids in seen.values() for i in ids if i != batch_id}
            if other:  # an earlier run of another payload died before its audit commit
                return self._reject_payload(
                    group, number, cycle, fetched,
                    f"{where}: already written with another payload ({', '.join(sorted(other))}); this payload "
                    f"differs (checksum {batch.payload_checksum[:16]}) and was quarantined whole, not merged",
                    started, locked=True, declared=declared)
            with self._timed("validate"):
                validation = validate_rows(self.contract, batch.data)
                verdict = gate(self.contract, validation.rows_in, validation.rows_quarantined, validation.table)
            held = verdict["held"]
            if validation.rows_valid + validation.rows_quarantined != validation.rows_in:
                raise ConservationError(f"{batch_id}: {validation.rows_in} in != {validation.rows_valid} valid + "
                                        f"{validation.rows_quarantined} quarantined")
            ingested_at = now_utc()
            snapshot = seen[self.raw].get(batch_id)
            failpoint("before-raw-commit")
            if snapshot is None and validation.rows_valid:
                with self._timed("raw"):
                    # held: staged on the table (write-audit-publish), not published
                    snapshot = self._write_raw(batch, batch_id, key, validation, ingested_at, cycle,
                                               publish=not held)
            failpoint("after-raw-commit")
            if batch_id not in seen[self.quarantine] and validation.rows_quarantined:
                with self._timed("quarantine"):
                    self._write_quarantine(group, number, batch_id, key, validation.quarantined, ingested_at, cycle)
            missed = [f"{batch_key(src, group, cycle, b)}/missed" for b in decision.missed]
            message = "; ".join(m for m in (note, decision.reason) if m)
            if missed:
                message = "; ".join(m for m in (message, f"missed {len(missed)} batch(es) the API published and "
                                                        f"withdrew before they were fetched: "
                                                        f"{', '.join(map(str, decision.missed))}") if m)
            if held:
                message = "; ".join(m for m in (
                    "held by the quality gate: " + "; ".join(verdict["reasons"])
                    + f" (release or reject it: `lakehouse batches release|reject {batch_id}`)", message) if m)
            result = BatchResult(src, group, number, batch_id, "held" if held else "committed", validation.rows_in,
                                 validation.rows_valid, validation.rows_quarantined, snapshot, fetched.checksum,
                                 message, cycle=cycle, cycle_source=decision.cycle_source,
                                 payload_checksum=batch.payload_checksum, missed=missed,
                                 expectations=validation.expectations, gate=verdict)
            if held and snapshot is not None:
                # a branch on the staged write: listed in the table's refs, and kept by snapshot expiry
                self.spark.sql(f"ALTER TABLE {self.raw} CREATE BRANCH IF NOT EXISTS `{held_branch(batch_id)}` "
                               f"AS OF VERSION {snapshot}")
            with self._timed("audit"):
                self._write_audit(result, started, key)
            return result

    def _reject_payload(self, group: int, batch_number: int | None, cycle: int | None, fetched: Fetched,
                        message: str, started: datetime, locked: bool = False,
                        declared: int | None = None) -> BatchResult:
        """Quarantine the whole body (once per checksum) and record a rejected batch."""
        key = batch_key(self.contract.id, group, cycle, batch_number)
        batch_id = f"{key}/{fetched.checksum[:16]}"
        reject_key = f"{key}/rejected/{fetched.checksum[:16]}"

        def write() -> BatchResult:
            result = BatchResult(self.contract.id, group, batch_number, batch_id, "rejected",
                                 checksum=fetched.checksum, message=message, cycle=cycle,
                                 cycle_source="declared" if declared is not None else "inferred")
            if not self.committed_ids(self.quarantine, reject_key):
                whole = Quarantined(-1, fetched.body.decode("utf-8", errors="replace"), [message])
                self._write_quarantine(group, batch_number, batch_id, reject_key, [whole], now_utc(), cycle,
                                       whole_payload=True)
            if not self.committed_ids(self.audit, reject_key):
                self._write_audit(result, started, reject_key)
            else:
                result.message += " (already recorded)"
            return result

        if locked:
            return write()
        with self.batch_lock(f"{self.contract.id}/g{group}"):
            return write()

    # ---- writes (one Iceberg commit each, tagged with the batch) ------------------------
    def _append(self, frame, table: str, key: str, batch_id: str, rows: int, publish: bool = True,
                **props: str) -> None:
        """Write-audit-publish: stage the rows under the WAP id `<key>#<batch id>` (unless a
        dead run staged them already), then publish. Iceberg refuses a second publish of
        one WAP id, so a write the server finished for a dead client is never doubled.
        `frame()`: a context manager giving (the rows' DataFrame, whether it reads staged
        files); entered only when the rows are to be written, so a retry that finds them
        staged or published already builds nothing."""
        published, staged, _ = self._commits(table, key)
        if batch_id in published:
            return
        wap_id = f"{key}#{batch_id}"
        if batch_id not in staged:
            with frame() as (df, from_files):
                writer = (df.writeTo(table)
                            .option(f"snapshot-property.{KEY_PROP}", key)
                            .option(f"snapshot-property.{ID_PROP}", batch_id))
                if rows < SHUFFLE_FROM_ROWS or from_files:
                    # a small write, or staged files (one per core already): each task writes
                    # its rows where they belong (a file per partition it meets) instead of
                    # shuffling them by partition first, a stage of its own (Iceberg's default
                    # for partitioned tables, `hash`)
                    writer = writer.option("distribution-mode", "none").option("fanout-enabled", "true")
                for name, value in props.items():
                    writer = writer.option(f"snapshot-property.{name}", value)
                self.spark.conf.set("spark.wap.id", wap_id)
                try:
                    writer.append()
                finally:
                    self.spark.conf.unset("spark.wap.id")
        failpoint(f"staged-{table.split('.', 1)[1]}")
        if not publish:  # held by the quality gate: the write stays staged
            return
        namespace, name = self._ident(table)
        try:
            self.spark.sql(f"CALL {self.cat}.system.publish_changes(table => '{namespace}.{name}', "
                           f"wap_id => '{wap_id}')").collect()
        except Exception as exc:  # a pyspark error carrying the JVM's exception
            if "DuplicateWAPCommitException" not in str(exc):
                raise
            say(f"{table}: {batch_id} was published already (by an earlier run's write); not again")

    def _write_raw(self, batch: Batch, batch_id: str, key: str, v: Validation, ingested_at: datetime,
                   cycle: int | None, publish: bool = True) -> int:
        """Only the rows' own columns travel to the server; the batch's constants (id, source,
        group, batch, time, cycle) are added there as literals. A large batch's rows travel
        as staged Parquet files when the server can read them (STAGE_FROM_ROWS)."""
        from pyspark.sql.types import StructType

        schema = spark_schema(self.contract)
        own = [f for f in schema.fields if f.name in set(self.contract.field_names) | {"_event_time"}]
        rows = utc_event_times(v.table.select([f.name for f in own]))
        staging = self.settings.spark_staging_path if v.rows_valid >= STAGE_FROM_ROWS else None

        @contextmanager
        def frame():
            with staged_parquet(staging, rows, batch_id) as paths:
                if paths:
                    df = self.spark.read.schema(StructType(own)).parquet(*paths)
                else:
                    df = self.spark.createDataFrame(rows, schema=StructType(own))
                yield self._with_constants(df, schema, batch, batch_id, ingested_at, cycle), bool(paths)

        self._append(frame, self.raw, key, batch_id, v.rows_valid, publish=publish)
        published, staged, _ = self._commits(self.raw, key)
        return published[batch_id] if publish else staged[batch_id]

    def _with_constants(self, df, schema, batch: Batch, batch_id: str, ingested_at: datetime,
                        cycle: int | None):
        from pyspark.sql import functions as F

        constants = {"_batch_id": F.lit(batch_id), "_source": F.lit(self.contract.id),
                     "_group_number": F.lit(batch.group_number).cast("int"),
                     "_batch_number": F.lit(batch.batch_number).cast("int"),
                     # a string cast in the session's time zone (UTC): no client clock conversion
                     "_ingested_at": F.lit(ingested_at.isoformat(sep=" ")).cast("timestamp"),
                     "_cycle": F.lit(cycle).cast("int"),
                     "_contract_version": F.lit(self.contract.version)}
        return df.select(*[F.col(f.name) if f.name not in constants else constants[f.name].alias(f.name)
                           for f in schema.fields])

    def _write_quarantine(self, group: int, batch_number: int | None, batch_id: str, key: str,
                          rows: list[Quarantined], ingested_at: datetime, cycle: int | None,
                          whole_payload: bool = False) -> None:
        import pyarrow as pa

        # Arrow columns, not a list of tuples: pyspark converts tuples row by row in Python
        # (a 1M-row batch's 17k quarantined rows: 0.6 s, against a few ms as columns).
        n = len(rows)
        data = pa.table({
            "_batch_id": pa.array([batch_id] * n, pa.string()),
            "_source": pa.array([self.contract.id] * n, pa.string()),
            "_group_number": pa.array([group] * n, pa.int32()),
            "_batch_number": pa.array([batch_number] * n, pa.int32()),
            "_row_index": pa.array([None if whole_payload else q.index for q in rows], pa.int32()),
            "raw_payload": pa.array([q.raw for q in rows], pa.string()),
            "reasons": pa.array([q.reasons for q in rows], pa.list_(pa.string())),
            "_ingested_at": pa.array([ingested_at] * n, pa.timestamp("us", tz="UTC")),  # naive UTC, marked UTC
            "_cycle": pa.array([cycle] * n, pa.int32()),
        })
        assert data.column_names == [c[0] for c in QUARANTINE_COLUMNS], "quarantine columns changed"
        self._append(lambda: nullcontext((self.spark.createDataFrame(data, struct_type(QUARANTINE_COLUMNS)), False)),
                     self.quarantine, key, batch_id, n)

    def _write_audit(self, r: BatchResult, started: datetime, key: str | None = None) -> None:
        """The batch's audit row, and in the same commit one `missed` row per batch of its
        cycle that was published and never fetched."""
        schema = struct_type(AUDIT_COLUMNS)
        finished = now_utc()
        row = [(r.batch_id, r.source, r.group_number, r.batch_number, r.rows_in, r.rows_valid,
                r.rows_quarantined, r.snapshot_id, r.checksum, started, finished, r.status, r.message,
                r.cycle, r.cycle_source, r.payload_checksum,
                orjson.dumps(r.expectations).decode() if r.expectations else None,
                orjson.dumps(r.gate).decode() if r.gate else None, r.decided_by)]
        for missed_id in r.missed:
            number = int(missed_id.rsplit("/", 2)[-2][1:])
            row.append((missed_id, r.source, r.group_number, number, 0, 0, 0, None, None, started, finished,
                        "missed", f"published and withdrawn before it was fetched (found when {r.batch_id} "
                                  "arrived): its rows are lost to this platform", r.cycle, r.cycle_source, None,
                        None, None, None))
        # The counts and the batch's identity ride along as snapshot properties too, so a
        # replay and the cycle decision answer from metadata.
        props = {ROWS_IN_PROP: str(r.rows_in), ROWS_VALID_PROP: str(r.rows_valid),
                 ROWS_QUARANTINED_PROP: str(r.rows_quarantined)}
        if r.snapshot_id is not None:
            props[RAW_SNAPSHOT_PROP] = str(r.snapshot_id)
        if r.payload_checksum:
            props[PAYLOAD_PROP] = r.payload_checksum
        if r.checksum:
            props[CHECKSUM_PROP] = r.checksum
        self._append(lambda: nullcontext((self.spark.createDataFrame(row, schema), False)), self.audit,
                     key or r.batch_id, r.batch_id, len(row), **props)

    # ---- held batches: a person's decision -----------------------------------------------
    def decide_held(self, batch_id: str, decision: str, by: str, reason: str = "") -> BatchResult:
        """Release (`released`) or reject (`rejected`) a batch the quality gate held, once.
        Released: its valid rows are appended to raw from the staged write, as newly
        ingested now (so incremental marts read them), and published. Rejected: they never
        are. Either way the decision is an audit row naming who made it, and the batch's
        branch is dropped. Exactly once: a rerun after a crash completes the decision."""
        if decision not in ("released", "rejected"):
            raise ValueError(decision)
        key = batch_id.rsplit("/", 1)[0]
        parsed = _KEY.match(key)
        if parsed is None or parsed["source"] != self.contract.id:
            raise LakehouseError(f"{batch_id!r} is not a batch id of {self.contract.id}",
                                 "take the id from `lakehouse batches held`")
        started = now_utc()
        with self.batch_lock(f"{self.contract.id}/g{parsed['group']}"):
            rows = self.audit_rows(batch_id)
            held = [r for r in rows if r["status"] == "held"]
            done = [r for r in rows if r["status"] in ("released", "rejected")]
            if not held:
                raise LakehouseError(f"{batch_id} is not a held batch (its audit rows: "
                                     f"{', '.join(r['status'] for r in rows) or 'none'})",
                                     "`lakehouse batches held` lists the batches waiting for a decision")
            if done:
                d = done[0]
                self._drop_branch(batch_id)
                raise LakehouseError(f"{batch_id} was {d['status']} already, by {d['decided_by']} at "
                                     f"{d['finished_at']:%Y-%m-%d %H:%M:%S} UTC", "a decision is final")
            h = held[0]
            decision_key = f"{key}/{decision}"
            snapshot = None
            if decision == "released" and h["rows_valid"]:
                self._release_rows(batch_id, decision_key, int(h["snapshot_id"]), int(h["rows_valid"]))
                snapshot = self.committed_ids(self.raw, decision_key)[batch_id]
            who = f"{decision} by {by}" + (f": {reason}" if reason else "")
            result = BatchResult(self.contract.id, h["group_number"], h["batch_number"], batch_id, decision,
                                 h["rows_in"], h["rows_valid"], h["rows_quarantined"], snapshot, h["checksum"],
                                 who, cycle=h["cycle"], cycle_source=h["cycle_source"],
                                 payload_checksum=h["payload_checksum"], decided_by=by)
            self._write_audit(result, started, decision_key)
            self._drop_branch(batch_id)
            return result

    def audit_rows(self, batch_id: str) -> list[dict]:
        from pyiceberg.expressions import EqualTo

        table = self.catalog.load_table(self._ident(self.audit))
        return table.scan(row_filter=EqualTo("batch_id", batch_id)).to_arrow().to_pylist()

    def _release_rows(self, batch_id: str, key: str, staged: int, rows: int) -> None:
        """Append the held batch's rows, read from its staged snapshot, with _ingested_at now."""
        from pyspark.sql import functions as F

        schema = spark_schema(self.contract)
        ingested_at = now_utc()

        @contextmanager
        def frame():
            held = self.spark.sql(f"SELECT * FROM {self.raw} VERSION AS OF {int(staged)}") \
                .where(F.col("_batch_id") == batch_id)
            have = set(held.columns)
            df = held.select(*[
                (F.lit(ingested_at.isoformat(sep=" ")).cast("timestamp") if f.name == "_ingested_at"
                 else F.col(f.name) if f.name in have else F.lit(None).cast(f.dataType)).alias(f.name)
                for f in schema.fields])
            yield df, False

        self._append(frame, self.raw, key, batch_id, rows)

    def _drop_branch(self, batch_id: str) -> None:
        self.spark.sql(f"ALTER TABLE {self.raw} DROP BRANCH IF EXISTS `{held_branch(batch_id)}`")

    # ---- several batches -----------------------------------------------------------------
    def current_batch(self, group: int) -> tuple[Fetched, Batch | None]:
        fetched = self.fetch(group)
        try:
            return fetched, parse_envelope(fetched.body, source=self.contract.id, group=group)
        except PayloadError:
            return fetched, None

    def ingest_batch_number(self, group: int, wanted: int, *, poll: float = 5.0,
                            timeout: float = 900.0) -> BatchResult:
        """Wait until the API publishes batch `wanted` (of its current cycle, or of the next
        one if it has gone past), then ingest it."""
        deadline = time.monotonic() + timeout
        while True:
            fetched, batch = self.current_batch(group)
            if batch is None or batch.batch_number == wanted:
                return self.ingest(group, fetched)
            if batch.batch_number > wanted and batch.batch_number == self.contract.source.batches_per_cycle \
                    and not self.contract.source.restart.when_cycle_ends:
                raise LakehouseError(f"{self.contract.id} group {group}: batch {wanted} is no longer served "
                                     f"(the API is at batch {batch.batch_number}, the end of its cycle)",
                                     "the protocol serves only the newest batch; ingest it without --batch, "
                                     "or restart the API's cycle")
            if time.monotonic() > deadline:
                raise LakehouseError(f"{self.contract.id} group {group}: batch {wanted} not published within "
                                     f"{timeout:g}s (API at batch {batch.batch_number})")
            time.sleep(poll)

    def restart_if_cycle_ended(self, group: int, contracts: list[Contract], report=None) -> int | None:
        """When this source has `restart.when_cycle_ends`, and every source with it has
        committed the last batch of its cycle, call the API's restart for the group, once
        (under a lock, and only while the API still serves the last batch). Returns the
        API's new cycle, or None."""
        spec = self.contract.source
        if not spec.restart.when_cycle_ends:
            return None
        from lakehouse import locks

        report = report or say
        with locks.hold(self.settings, f"restart:g{group}", purpose=f"restart group {group}", say=say):
            for contract in contracts:
                if not contract.source.restart.when_cycle_ends:
                    continue
                history = Ingestor(self.settings, contract, self._spark).history(group)
                if not history:
                    return None
                newest = max(d.cycle for d in history)
                if max(d.batch_number for d in history if d.cycle == newest) < contract.source.batches_per_cycle:
                    return None
            _, batch = self.current_batch(group)
            if batch is None or batch.batch_number < spec.batches_per_cycle:
                return None  # restarted already (by another source's run), or not at the end yet
            url = endpoint_url(self.settings, self.contract, spec.restart.path)
            try:
                resp = requests.get(url, params={"group_number": group}, headers=self.headers, timeout=self.timeout)
                resp.raise_for_status()
            except requests.RequestException as exc:
                raise LakehouseError(f"{self.contract.id} group {group}: the cycle ended and GET {url} failed: {exc}",
                                     "the API keeps serving the cycle's last batch until it is restarted; "
                                     "check the API, or set source.restart.when_cycle_ends to false") from exc
            cycle = resp.json().get("cycle") if resp.headers.get("content-type", "").startswith("application/json") \
                else None
            report(f"{self.contract.id} group {group}: every source has its cycle's last batch; "
                   f"restarted the API's data generation (GET {spec.restart.path}"
                   f"{f', cycle {cycle}' if cycle else ''})")
            return cycle if isinstance(cycle, int) else 0


def held_batches(settings: Settings) -> list[dict]:
    """The audit rows of batches the quality gate holds and nobody has decided on yet,
    oldest first (read with pyiceberg: no Spark)."""
    from pyiceberg.expressions import In

    from lakehouse.catalog import catalog

    cat = catalog(settings)
    if not cat.table_exists(("audit", "ingestion_log")):
        return []
    rows = cat.load_table(("audit", "ingestion_log")).scan(
        row_filter=In("status", ["held", "released", "rejected"]),
        selected_fields=("batch_id", "source", "group_number", "batch_number", "rows_in", "rows_valid",
                         "rows_quarantined", "started_at", "status", "message")).to_arrow().to_pylist()
    decided = {r["batch_id"] for r in rows if r["status"] in ("released", "rejected")}
    held = {r["batch_id"]: r for r in rows if r["status"] == "held" and r["batch_id"] not in decided}
    return sorted(held.values(), key=lambda r: r["started_at"])


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


def ingest_following(ingestors: list[Ingestor], group: int, *, follow: float, poll: float = 2.0,
                     report=print) -> list[BatchResult]:
    """The batch each source's API serves now; for a source whose batch was already ingested,
    keep polling (every `poll` seconds, for up to `follow` seconds) and ingest its next batch
    as soon as it is published. A source is done at its first batch that is not a replay, so
    a scheduled run ends, and its marts build starts, right after the new batch commits.

    This is how a run scheduled at the API's period catches each publication within a poll,
    whatever the phase between the scheduler's clock and the API's. A poll whose body is
    byte-identical to the last replay (and declares the same cycle) is known to be that
    replay: it costs the HTTP request only, no metadata read."""
    deadline = time.monotonic() + follow
    pending = list(ingestors)
    results: dict[str, BatchResult] = {}
    replay_of: dict[str, tuple] = {}
    while True:
        for ing in list(pending):
            src = ing.contract.id
            started = now_utc()
            try:
                fetched = ing.fetch(group)
            except FetchError as exc:
                results[src] = ing.record_fetch_failure(group, exc, started)
                pending.remove(ing)
                report(results[src].line())
                continue
            spec = ing.contract.source.cycle
            identity = (fetched.checksum, fetched.headers.get(spec.name.lower()) if spec.from_ == "header" else None)
            if replay_of.get(src) == identity:
                continue
            result = ing.ingest(group, fetched=fetched)
            results[src] = result
            if result.status == "replayed":
                replay_of[src] = identity
                continue
            pending.remove(ing)
            report(result.line())
            for missed in result.missed:
                report(f"  MISSED {missed}: published and withdrawn before it was fetched")
        now = time.monotonic()
        if not pending or now >= deadline:
            break
        time.sleep(min(poll, deadline - now))
    for ing in pending:  # nothing new within the window
        report(results[ing.contract.id].line())
    return [results[i.contract.id] for i in ingestors]


def ingest_cycles(ingestors: list[Ingestor], group: int, *, cycles: int = 1, poll: float = 5.0,
                  timeout: float = 3600.0, report=print) -> list[BatchResult]:
    """Ingest each source's batches as the API publishes them, polling the sources in turn
    (the protocol serves only the newest batch, so they advance together), until every
    source has committed the last batch of a cycle `cycles` times in this run (or found it
    already ingested). Each poll that finds nothing new is a replay: metadata only, no
    engine work. Batches the API published and withdrew between two polls are recorded in
    audit.ingestion_log as missed and reported, never skipped silently. Sources with
    `restart.when_cycle_ends` have the API restarted once every such source is done with
    a cycle, so the run goes on to the next one.
    """
    results: list[BatchResult] = []
    ends = {i.contract.id: 0 for i in ingestors}      # cycle ends reached in this run
    last = {i.contract.id: None for i in ingestors}   # the last (cycle, batch) seen
    contracts = [i.contract for i in ingestors]
    deadline = time.monotonic() + timeout
    while True:
        for ing in ingestors:
            src = ing.contract.id
            if ends[src] >= cycles:
                continue
            result = ing.ingest(group)
            seen = (result.cycle, result.batch_number)
            if result.status != "replayed":
                results.append(result)
            if result.status != "replayed" or last[src] is None:
                per_cycle = ing.contract.source.batches_per_cycle
                prefix = f"[{result.batch_number}/{per_cycle}] " if result.batch_number else ""
                report(prefix + result.line())
                for missed in result.missed:
                    report(f"  MISSED {missed}: published and withdrawn before it was fetched "
                           "(poll more often than the API publishes)")
            if result.status == "failed":
                ends[src] = cycles  # the API is unreachable; the error is recorded
                continue
            at_end = result.batch_number == ing.contract.source.batches_per_cycle
            if at_end and seen != last[src]:
                ends[src] += 1
            last[src] = seen
        if all(n >= cycles for n in ends.values()):
            return results
        if all(n >= 1 for n in ends.values()):
            for ing in ingestors:
                if ing.restart_if_cycle_ended(group, contracts, report=report) is not None:
                    break
        if time.monotonic() > deadline:
            raise LakehouseError(f"group {group}: {cycles} cycle(s) not ingested within {timeout:g}s "
                                 f"(last seen: {last})", "is the API's publication period longer than expected?")
        time.sleep(poll)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
