"""Ingestion against the real stack (Spark, MinIO, PostgreSQL, Trino) and our simulator,
served over real HTTP. Every assertion is an exact row count.

The simulator runs in this process (uvicorn on 127.0.0.1) with a clock the tests move,
so a new batch is published when a test says so. Each test uses its own group numbers, so
its batch keys never meet another test's rows.
"""

import json
import os
import subprocess
import sys

import pytest
import requests

from lakehouse.contracts import load_all
from lakehouse.simulator import QUARANTINE_KINDS, generate_batch
from lakehouse.simulator.server import SteppedSimulator
from lakehouse.trino import query
from spark_jobs.ingest import Ingestor
from tests.integration.conftest import fresh_group

pytestmark = [pytest.mark.trino, pytest.mark.spark]
SEED, PERIOD, ROWS = 7, 60.0, 400
NETWORK = {"network_a": "network-a", "network_b": "network-b"}


class Simulator(SteppedSimulator):
    """Our batch API simulator as a real HTTP server with a hand-moved clock."""

    def __init__(self, tmp_path, fault_rate=0.0, row_format=None):
        tmp_path.mkdir(parents=True, exist_ok=True)
        super().__init__(tmp_path / "sim-state.json", seed=SEED, rows_per_batch=ROWS,
                         fault_rate=fault_rate, period_seconds=PERIOD, row_format=row_format)
        self.fault_rate = fault_rate
        self.row_format = row_format

    def arm(self, source, kind, times, delay=30.0):
        requests.post(f"{self.url}/_control/faults", json={
            "network": NETWORK[source], "kind": kind, "times": times, "delay_seconds": delay},
            timeout=5).raise_for_status()

    def restart(self, group):
        requests.get(f"{self.url}/restart_data_generation", params={"group_number": group},
                     timeout=5).raise_for_status()

    def expected(self, source, group, batch, cycle=1):
        return generate_batch(NETWORK[source], group, cycle, batch, seed=SEED, rows=ROWS,
                              fault_rate=self.fault_rate, row_format=self.row_format)


@pytest.fixture(scope="module")
def contracts():
    return load_all()


@pytest.fixture
def simulator(tmp_path):
    sims = []

    def make(**kw):
        sims.append(Simulator(tmp_path / str(len(sims)), **kw))
        return sims[-1]

    yield make
    for s in sims:
        s.stop()


def ingestor(stack, spark, contracts, sim, source, limit=None, **kw):
    """An Ingestor of `source` on the simulator; `limit`: the contract's quarantine limit
    raised for a test whose batches quarantine more (the gate would hold them)."""
    from lakehouse.contracts.model import Quality

    settings = stack.model_copy(update={"batch_api_url": sim.url})
    contract = contracts[source]
    if limit is not None:
        contract = contract.model_copy(update={"quality": Quality(max_quarantine_rate=limit)})
    ing = Ingestor(settings, contract, spark, **kw)
    ing.ensure_tables()
    return ing


def counts(stack, source, batch_id):
    raw = query(stack, f"SELECT count(*) FROM raw.{source} WHERE _batch_id = '{batch_id}'")[0][0]
    quarantine = query(stack, f"SELECT count(*) FROM quarantine.{source} WHERE _batch_id = '{batch_id}'")[0][0]
    return raw, quarantine


def snapshots(stack, table):
    schema, name = table.split(".")
    return query(stack, f'SELECT count(*) FROM {schema}."{name}$snapshots"')[0][0]


KIND_REASON = {
    "malformed": "malformed row",
    "out_of_range": "outside [",
    "null_required": "required, got null",
    "drift_renamed": ("unknown field", "malformed row: array of"),
    "drift_type": "type mismatch",
}


@pytest.mark.parametrize("source, row_format", [
    ("network_a", None), ("network_b", None), ("network_b", {"network-b": "object"})])
def test_every_row_fault_ends_in_quarantine_with_its_reason(stack, spark, contracts, simulator,
                                                            source, row_format):
    sim = simulator(fault_rate=0.25, row_format=row_format)
    ing = ingestor(stack, spark, contracts, sim, source, limit=1.0)
    group = fresh_group()
    result = ing.ingest(group)
    expected = sim.expected(source, group, 1)
    assert result.status == "committed"
    assert (result.rows_in, result.rows_quarantined) == (ROWS, len(expected.quarantine_indices))
    assert result.rows_valid == ROWS - len(expected.quarantine_indices)
    assert counts(stack, source, result.batch_id) == (result.rows_valid, result.rows_quarantined)
    rows = query(stack, f"SELECT _row_index, reasons FROM quarantine.{source} "
                        f"WHERE _batch_id = '{result.batch_id}' ORDER BY _row_index")
    assert [r[0] for r in rows] == sorted(expected.quarantine_indices)
    kinds_seen = set()
    for index, reasons in rows:
        kind = expected.faults[index]
        kinds_seen.add(kind)
        wanted = KIND_REASON[kind]
        wanted = wanted if isinstance(wanted, tuple) else (wanted,)
        assert any(w in r for r in reasons for w in wanted), (index, kind, reasons)
    assert kinds_seen == set(QUARANTINE_KINDS)
    # the valid fault kinds (duplicates, late, unknown stations, out of order) are in raw
    valid_faults = [i for i, k in enumerate(expected.faults) if k and k not in QUARANTINE_KINDS]
    assert valid_faults and result.rows_valid >= len(valid_faults)
    # the contract's suite result on this batch is kept where SQL reads it
    (doc,) = query(stack, f"SELECT expectation_results FROM audit.ingestion_log "
                          f"WHERE batch_id = '{result.batch_id}' AND status = 'committed'")[0]
    suite = json.loads(doc)
    assert suite == result.expectations and suite["success"] is False
    assert suite["meta"]["rows_in"] == ROWS and suite["statistics"]["unsuccessful_expectations"] > 0
    flagged = sum(r["result"]["unexpected_count"] for r in suite["results"])
    checked = suite["meta"]["rows_checked"]
    assert 0 < flagged and checked == ROWS - suite["meta"]["rows_not_checked"]


def test_a_large_batch_reaches_the_server_as_staged_parquet_with_the_same_rows(stack, spark, contracts, simulator,
                                                                               monkeypatch):
    """From STAGE_FROM_ROWS valid rows, the rows travel as Parquet files the server reads
    (lowered here so a 400-row batch takes that path): raw gets exactly the validated rows,
    event times included, and the files are gone afterwards."""
    import stat
    from contextlib import contextmanager
    from datetime import timezone
    from pathlib import Path
    from urllib.parse import urlparse

    from lakehouse.ingest.validate import validate_rows
    from spark_jobs import ingest as job

    staged = []
    real = job.staged_parquet

    @contextmanager
    def spy(folder, table, batch_id):
        with real(folder, table, batch_id) as paths:
            staged.extend(paths)
            files = [Path(urlparse(p).path) for p in paths]
            # the rows are data: private like everything else under the data folder
            assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
            assert {stat.S_IMODE(d.stat().st_mode) for d in (files[0].parent, folder)} == {0o700}
            yield paths

    monkeypatch.setattr(job, "STAGE_FROM_ROWS", 1)
    monkeypatch.setattr(job, "staged_parquet", spy)
    sim = simulator(fault_rate=0.1)
    ing = ingestor(stack, spark, contracts, sim, "network_a")
    group = fresh_group()
    result = ing.ingest(group)
    assert result.status == "committed" and staged and all(p.startswith("file://") for p in staged)
    assert not any(Path(urlparse(p).path).exists() for p in staged), "staged files are removed"
    expected = validate_rows(contracts["network_a"], sim.expected("network_a", group, 1).data)
    columns = ["station_code", "timestamp", "pm25", "relative_humidity", "_event_time"]
    got = query(stack, f"SELECT {', '.join(f'{c!r}'.replace(chr(39), chr(34)) for c in columns)} "
                       f"FROM raw.network_a WHERE _batch_id = '{result.batch_id}'")
    want = [tuple(r.values()) for r in expected.table.select(columns).to_pylist()]
    got = [(*r[:-1], r[-1].astimezone(timezone.utc).replace(tzinfo=None)) for r in got]  # Trino: timestamptz
    assert len(got) == result.rows_valid == len(want) > 0
    assert sorted(got, key=repr) == sorted(want, key=repr)


@pytest.mark.parametrize("kind, status, message", [
    ("invalid_json", "rejected", "not valid JSON"),
    ("wrong_shape", "rejected", "got a JSON list"),
    ("empty_data", "rejected", "empty 'data' array"),
    ("http_500", "failed", "HTTP 500"),
    ("timeout", "failed", "timed out"),
    ("truncated", "failed", "cut short"),
])
def test_whole_batch_faults_are_clear_audited_and_write_no_rows(stack, spark, contracts, simulator,
                                                              kind, status, message):
    sim = simulator()
    ing = ingestor(stack, spark, contracts, sim, "network_a", timeout=1.0, attempts=2, backoff=0.05)
    group = fresh_group()
    # transport faults are retried (2 attempts here), so they must last both; a bad payload
    # is not retried, so one is enough
    sim.arm("network_a", kind, times=2 if status == "failed" else 1, delay=3.0)
    raw_before = query(stack, f"SELECT count(*) FROM raw.network_a WHERE _group_number = {group}")[0][0]
    result = ing.ingest(group)
    assert result.status == status and message in result.message, result
    assert "network_a" in result.message and f"group {group}" in result.message
    audit = query(stack, f"SELECT status, rows_in, rows_valid, rows_quarantined, message FROM audit.ingestion_log "
                         f"WHERE source = 'network_a' AND group_number = {group}")
    assert len(audit) == 1 and audit[0][:4] == (status, 0, 0, 0) and message in audit[0][4]
    assert query(stack, f"SELECT count(*) FROM raw.network_a WHERE _group_number = {group}")[0][0] == raw_before == 0
    whole = query(stack, f"SELECT _row_index, raw_payload FROM quarantine.network_a WHERE _group_number = {group}")
    if status == "rejected":  # the body arrived: it is kept, whole
        assert len(whole) == 1 and whole[0][0] is None and whole[0][1]
    else:                     # no body: nothing to keep
        assert whole == []
    # once the API is healthy again, the same batch ingests normally
    result = ing.ingest(group)
    assert result.status == "committed" and result.rows_in == ROWS


def test_replay_adds_no_rows_and_no_snapshot(stack, spark, contracts, simulator):
    sim = simulator(fault_rate=0.05)
    ing = ingestor(stack, spark, contracts, sim, "network_b")
    group = fresh_group()
    first = ing.ingest(group)
    assert first.status == "committed"
    before = {t: snapshots(stack, t) for t in ("raw.network_b", "quarantine.network_b", "audit.ingestion_log")}
    rows_before = counts(stack, "network_b", first.batch_id)
    for _ in range(2):
        again = ing.ingest(group)
        assert again.status == "replayed" and "already ingested" in again.message
        assert again.batch_id == first.batch_id
    assert {t: snapshots(stack, t) for t in before} == before
    assert counts(stack, "network_b", first.batch_id) == rows_before == (first.rows_valid, first.rows_quarantined)


def test_replay_is_detected_after_maintenance_expired_the_batch_snapshots(stack, spark, contracts, simulator):
    """Table maintenance expires old snapshots, and the batch keys they carry; the audit
    log's rows remain, and they alone still make a replay write nothing."""
    from datetime import datetime, timedelta, timezone

    sim = simulator(fault_rate=0.05)
    ing = ingestor(stack, spark, contracts, sim, "network_b")
    group = fresh_group()
    first = ing.ingest(group)
    assert first.status == "committed" and first.rows_quarantined > 0
    later = ing.ingest(fresh_group())  # newer commits in all three tables
    assert later.status == "committed" and later.rows_quarantined > 0
    cutoff = (datetime.now(timezone.utc) + timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S")
    for table in ("raw.network_b", "quarantine.network_b", "audit.ingestion_log"):
        spark.sql(f"CALL lakehouse.system.expire_snapshots(table => 'lakehouse.{table}', "
                  f"older_than => TIMESTAMP '{cutoff}', retain_last => 1)").collect()
    key = first.batch_id.rsplit("/", 1)[0]
    assert all(not ing.committed_ids(t, key) for t in (ing.raw, ing.quarantine, ing.audit))  # keys gone
    rows_before = counts(stack, "network_b", first.batch_id)
    again = ing.ingest(group)
    assert again.status == "replayed" and again.batch_id == first.batch_id
    assert (again.rows_in, again.rows_valid, again.rows_quarantined) == (
        first.rows_in, first.rows_valid, first.rows_quarantined)
    assert counts(stack, "network_b", first.batch_id) == rows_before == (first.rows_valid, first.rows_quarantined)


# A changed payload within one cycle, and a restarted cycle's new data: tests/integration/test_cycles.py.


def test_row_conservation_over_a_full_cycle_for_both_networks(stack, spark, contracts, simulator):
    sim = simulator(fault_rate=0.04)
    group = fresh_group()
    ings = [ingestor(stack, spark, contracts, sim, s) for s in ("network_a", "network_b")]
    for batch in range(1, 11):
        for ing in ings:
            r = ing.ingest(group)
            assert (r.status, r.batch_number) == ("committed", batch)
        sim.next_batch()
    for source in ("network_a", "network_b"):
        audit = query(stack, f"SELECT batch_number, batch_id, rows_in, rows_valid, rows_quarantined "
                             f"FROM audit.ingestion_log WHERE source = '{source}' AND group_number = {group} "
                             "ORDER BY batch_number")
        assert [a[0] for a in audit] == list(range(1, 11))
        for batch, batch_id, rows_in, valid, quarantined in audit:
            expected = sim.expected(source, group, batch)
            assert rows_in == ROWS == valid + quarantined
            assert quarantined == len(expected.quarantine_indices)
            assert counts(stack, source, batch_id) == (valid, quarantined)


def test_two_concurrent_ingests_of_different_batches_both_commit(stack, simulator):
    sim = simulator(fault_rate=0.02)
    g1, g2 = fresh_group(), fresh_group()
    env_url = {"LAKEHOUSE_BATCH_API_URL": sim.url}
    procs = [subprocess.Popen([sys.executable, "-m", "lakehouse.cli", "ingest", "-s", "network_a", "-g", str(g)],
                              env={**os.environ, **env_url}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for g in (g1, g2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert "committed" in out
    for g in (g1, g2):
        rows = query(stack, f"SELECT count(*) FROM raw.network_a WHERE _group_number = {g}")[0][0]
        audit = query(stack, f"SELECT rows_valid FROM audit.ingestion_log WHERE source = 'network_a' "
                             f"AND group_number = {g} AND status = 'committed'")
        assert len(audit) == 1 and rows == audit[0][0] > 0


@pytest.mark.parametrize("override, message", [
    ({"LAKEHOUSE_SPARK_CONNECT_TOKEN": "not-the-servers-token"}, "refused this client's token"),
    ({"LAKEHOUSE_SPARK_CONNECT_PORT": "1"}, "is not reachable"),  # nothing listens there: a server down
])
def test_spark_connect_down_or_refusing_the_token_is_a_clear_error_and_loses_nothing(
        stack, spark, contracts, simulator, override, message):
    sim = simulator()
    group = fresh_group()
    env = {**os.environ, "LAKEHOUSE_BATCH_API_URL": sim.url, **override}
    proc = subprocess.run([sys.executable, "-m", "lakehouse.cli", "ingest", "-s", "network_a", "-g", str(group)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert f"network_a group {group} batch 1: the Spark Connect server at sc://" in proc.stderr, proc.stderr
    assert message in proc.stderr and "nothing was written" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert query(stack, "SELECT count(*) FROM audit.ingestion_log "
                        f"WHERE source = 'network_a' AND group_number = {group}") == [(0,)]
    # the same batch, once the engine is reachable, ingests in full
    result = ingestor(stack, spark, contracts, sim, "network_a").ingest(group)
    assert result.status == "committed" and result.rows_in == ROWS
