"""An ingest killed with SIGKILL leaves every table at its old or its new snapshot, and a
rerun completes with exactly one published commit per table. Files a dead commit wrote
are left in place.

The writes run on the Spark Connect server, which may finish a write after its client
died (and its advisory lock went with it). Write-audit-publish makes that safe: a rerun
publishes what was staged, or finds it published; Iceberg never publishes a WAP id twice.

The source tables exist before the first test (`lakehouse init`, run for every module)."""

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import boto3
import psycopg
import pytest
from botocore.client import Config

from lakehouse.stack.provision import pg_connect
from lakehouse.simulator.server import SteppedSimulator
from lakehouse.trino import query
from tests.integration.conftest import fresh_group

pytestmark = [pytest.mark.trino, pytest.mark.spark]
ROWS = 2000


@pytest.fixture
def sim(stack, tmp_path):
    s = SteppedSimulator(tmp_path / "state.json", seed=11, rows_per_batch=ROWS, fault_rate=0.05)
    yield s
    s.stop()


def start_ingest(sim, group, failpoint=None):
    env = {**os.environ, "LAKEHOUSE_BATCH_API_URL": sim.url}
    if failpoint:
        env["LAKEHOUSE_FAILPOINT"] = failpoint
    return subprocess.Popen([sys.executable, "-m", "lakehouse.cli", "ingest", "-s", "network_a", "-g", str(group)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def rows_of(stack, table, group):
    return query(stack, f"SELECT count(*) FROM {table} WHERE _group_number = {group}")[0][0]


def audit_of(stack, group):
    return query(stack, "SELECT status, rows_valid, rows_quarantined FROM audit.ingestion_log "
                        f"WHERE source = 'network_a' AND group_number = {group}")


def snapshot_of(stack, table):
    """The table's current snapshot (a staged, unpublished write is not one)."""
    schema, name = table.split(".")
    return query(stack, f'SELECT snapshot_id FROM {schema}."{name}$history" WHERE is_current_ancestor '
                        "ORDER BY made_current_at DESC LIMIT 1")


def commits_of(stack, table, group):
    """Published snapshots of `table` (ancestors of the current one) that carry this group's
    batch 1, directly or as the publication of its staged write (exactly once means one)."""
    schema, name = table.split(".")
    key = f"network_a/g{group}/b1"
    return query(stack, f'SELECT count(*) FROM {schema}."{name}$snapshots" s '
                        f'JOIN {schema}."{name}$history" h ON s.snapshot_id = h.snapshot_id '
                        f"WHERE h.is_current_ancestor AND (element_at(s.summary, 'lakehouse.batch-key') = '{key}' "
                        f"OR starts_with(element_at(s.summary, 'published-wap-id'), '{key}#'))")[0][0]


def rerun_completes(stack, sim, group):
    proc = start_ingest(sim, group)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert "committed" in out, out
    exactly_once(stack, group)


def exactly_once(stack, group):
    committed = [a for a in audit_of(stack, group) if a[0] == "committed"]
    assert len(committed) == 1
    _, valid, quarantined = committed[0]
    assert valid + quarantined == ROWS
    assert rows_of(stack, "raw.network_a", group) == valid
    assert rows_of(stack, "quarantine.network_a", group) == quarantined
    assert [commits_of(stack, t, group) for t in ("raw.network_a", "quarantine.network_a",
                                                  "audit.ingestion_log")] == [1, 1, 1]


def test_killed_before_the_write(stack, sim):
    group = fresh_group()
    before = {t: snapshot_of(stack, t) for t in ("raw.network_a", "quarantine.network_a", "audit.ingestion_log")}
    proc = start_ingest(sim, group, "before-raw-commit")
    proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL
    assert {t: snapshot_of(stack, t) for t in before} == before  # old snapshot everywhere
    assert rows_of(stack, "raw.network_a", group) == 0 and audit_of(stack, group) == []
    rerun_completes(stack, sim, group)


def test_killed_between_the_raw_and_quarantine_commits(stack, sim):
    group = fresh_group()
    proc = start_ingest(sim, group, "after-raw-commit")
    proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL
    landed = rows_of(stack, "raw.network_a", group)
    assert landed > 0                                   # raw at its new snapshot, whole
    assert rows_of(stack, "quarantine.network_a", group) == 0 and audit_of(stack, group) == []
    rerun_completes(stack, sim, group)                  # writes the rest, raw not twice
    assert rows_of(stack, "raw.network_a", group) == landed


def test_killed_after_staging_before_publishing(stack, sim):
    """Killed between the staged write and its publication: readers never saw the staged
    rows, and the rerun publishes that staged write instead of writing the rows again."""
    group = fresh_group()
    before = snapshot_of(stack, "raw.network_a")
    proc = start_ingest(sim, group, "staged-raw.network_a")
    proc.communicate(timeout=600)
    assert proc.returncode == -signal.SIGKILL
    assert snapshot_of(stack, "raw.network_a") == before  # staged, not published
    assert rows_of(stack, "raw.network_a", group) == 0
    # element_at: a snapshot without the property (a publication cherry-picked past another
    # ingest's commit, a compaction) is no match, where summary['...'] would fail the query
    staged = query(stack, 'SELECT count(*) FROM raw."network_a$snapshots" '
                          f"WHERE element_at(summary, 'lakehouse.batch-key') = 'network_a/g{group}/b1'")[0][0]
    assert staged == 1
    rerun_completes(stack, sim, group)
    assert query(stack, 'SELECT count(*) FROM raw."network_a$snapshots" '
                        f"WHERE element_at(summary, 'lakehouse.batch-key') = 'network_a/g{group}/b1'")[0][0] == 1


def test_killed_during_the_commit_after_the_data_files_are_written(stack, sim):
    """Hold the catalog row of raw.network_a so the publication blocks at the pointer swap
    (its data files, manifests and metadata are already in MinIO), then SIGKILL the ingest.
    The server's side of the commit may still finish once the lock goes: the table is then
    at its new snapshot, and the rerun must not publish the batch again."""
    group = fresh_group()
    before = snapshot_of(stack, "raw.network_a")
    files_before = set(_s3_keys(stack, "raw/"))
    with catalog_row_locked(stack):
        proc = start_ingest(sim, group)
        blocked = _wait_for_blocked_commit(stack, proc)
        new_files = set(_s3_keys(stack, "raw/")) - files_before
        assert any(k.endswith(".parquet") for k in new_files), "data files should be written by now"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        with pg_connect(stack) as admin:  # the dead process's session dies with it
            admin.execute("SELECT pg_terminate_backend(%s)", (blocked,))
    landed = rows_of(stack, "raw.network_a", group)
    if landed == 0:
        assert snapshot_of(stack, "raw.network_a") == before   # old snapshot: the swap never happened
    else:
        assert commits_of(stack, "raw.network_a", group) == 1  # new snapshot: the whole batch, once
    rerun_completes(stack, sim, group)
    # the dead commit's files are never deleted by ingestion (orphan removal has a safe age margin)
    assert new_files <= set(_s3_keys(stack, "raw/"))


@contextmanager
def catalog_row_locked(s):
    """Hold raw.network_a's catalog row, so a commit to it blocks at the pointer swap."""
    holder = psycopg.connect(host=s.postgres_address, port=s.postgres_port, dbname=s.catalog_db,
                             user=s.catalog_db_user, password=s.catalog_db_password.get_secret_value())
    try:
        holder.execute("SELECT 1 FROM iceberg_tables WHERE catalog_name = %s AND table_namespace = 'raw' "
                       "AND table_name = 'network_a' FOR UPDATE", (s.catalog_name,))
        yield
    finally:
        holder.rollback()
        holder.close()


def _wait_for_blocked_commit(stack, proc, timeout=300):
    deadline = time.monotonic() + timeout
    with pg_connect(stack) as admin:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            row = admin.execute("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                "AND query ILIKE 'UPDATE iceberg_tables%'").fetchone()
            if row:
                return row[0]
            time.sleep(0.2)
    raise AssertionError("the ingest never reached the catalog pointer swap")


def _s3_keys(stack, prefix):
    client = boto3.client("s3", endpoint_url=stack.s3_endpoint, aws_access_key_id=stack.reader_s3_access_key,
                          aws_secret_access_key=stack.reader_s3_secret_key.get_secret_value(),
                          region_name=stack.s3_region, config=Config(s3={"addressing_style": "path"}))
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=stack.warehouse_bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def test_spark_connect_server_killed_during_a_commit(stack, sim):
    """SIGKILL of the Spark Connect server while a batch's commit waits at the pointer swap.
    The supervisor starts it again. The ingest either reconnects to the new server within
    its retry window and completes the batch, or fails and says so, every table at its old
    snapshot; then a rerun completes it. Either way: exactly one commit per table."""
    from lakehouse.stack import supervisor

    group = fresh_group()
    before = snapshot_of(stack, "raw.network_a")
    with catalog_row_locked(stack):
        proc = start_ingest(sim, group)
        _wait_for_blocked_commit(stack, proc)
        server = supervisor.client(stack).supervisor.getProcessInfo("spark-connect")["pid"]
        os.kill(server, signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode != -signal.SIGKILL and "Traceback" not in err, err[-3000:]
    if proc.returncode == 0:
        assert "the Spark Connect server restarted; reconnecting and retrying the batch" in err, err
        exactly_once(stack, group)
        return
    assert f"network_a group {group} batch 1: the Spark Connect server failed during the batch" in err, err
    assert snapshot_of(stack, "raw.network_a") == before and rows_of(stack, "raw.network_a", group) == 0
    assert audit_of(stack, group) == []
    from .conftest import lakehouse

    lakehouse("up", "--service=spark", timeout=600)  # the supervisor restarts it; wait until healthy
    rerun_completes(stack, sim, group)
