"""Airflow against the native stack: the DAGs in airflow_dags/ run by Airflow 3.3 itself.

- `airflow dags test` of an ingestion DAG and of dbt_build ends with rows in the marts, and
  rerunning the same data interval writes nothing;
- the maintenance DAG compacts tables with many small files (Spark and Trino layers),
  keeps a fresh orphan file, and every query answers the same afterwards;
- with the batch API down, scheduled runs fail with a clear error, and recover by
  themselves once it is back (the real scheduler, api-server and LocalExecutor).

The test stack starts its DAGs paused (LAKEHOUSE_AIRFLOW_DAGS_PAUSED), so only what a test
runs or unpauses runs. Ingestion DAGs fetch the stack's group (LAKEHOUSE_GROUP_NUMBER, or
a fresh one given to `airflow dags test`) from the stack's simulator, which serves batch 1
for an hour in the test stack: reruns meet the same batch.
"""

import json
import os
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from lakehouse.stack.services import airflow as runtime
from lakehouse.stack import supervisor
from lakehouse.trino import query

from .conftest import fresh_group, lakehouse

pytestmark = pytest.mark.airflow
GROUP = int(os.environ.get("LAKEHOUSE_GROUP_NUMBER", "1"))


def dags_test(dag_id: str, logical_date: str | None = None, check: bool = True, group: int | None = None):
    args = ["airflow", "dags", "test", dag_id] + ([logical_date] if logical_date else [])
    env = {"LAKEHOUSE_GROUP_NUMBER": str(group)} if group is not None else None
    return lakehouse(*args, check=check, timeout=1200, env=env)


def audit_rows(settings, source, group=GROUP):
    return query(settings, "SELECT batch_id, status FROM audit.ingestion_log "
                           f"WHERE source = '{source}' AND group_number = {group} ORDER BY batch_id, status")


def raw_count(settings, table, group=GROUP):
    return query(settings, f"SELECT count(*) FROM raw.{table} WHERE _group_number = {group}")[0][0]


def test_dags_test_ingest_then_dbt_ends_in_the_marts_and_reruns_are_idempotent(stack):
    group = fresh_group()
    interval_end = datetime.now(timezone.utc).replace(second=0, microsecond=0).isoformat()
    first = dags_test("ingest_network_a", interval_end, group=group)
    audit = audit_rows(stack, "network_a", group)
    assert [s for _, s in audit] == ["committed"], audit
    batch_id = audit[0][0]
    rows = raw_count(stack, "network_a", group)
    assert rows > 0
    assert batch_id in first.stdout + first.stderr  # the task log names the batch

    again = dags_test("ingest_network_a", interval_end, group=group)  # the same data interval, rerun
    assert "already ingested: nothing written" in again.stdout + again.stderr
    assert audit_rows(stack, "network_a", group) == audit
    assert raw_count(stack, "network_a", group) == rows

    dags_test("dbt_build")
    hourly = query(stack, "SELECT count(*), sum(n_observations) FROM marts.fct_observations_hourly")
    assert hourly[0][0] > 0 and hourly[0][1] > 0, hourly
    assert query(stack, "SELECT count(*) FROM marts.fct_observations WHERE source = 'network_a' "
                        f"AND _batch_id = '{batch_id}'")[0][0] > 0  # this test's batch reached the marts


def _probe_rows(n_inserts=12):
    return [(i, f"row-{i}", i * 1.5) for i in range(n_inserts * 3)]


def _data_files(stack, schema, table):
    return query(stack, f'SELECT count(*) FROM {schema}."{table}$files"')[0][0]


@pytest.fixture
def small_file_tables(stack, spark):
    """raw.maint_probe written by Spark and marts.maint_probe by Trino, 12 commits each."""
    rows = _probe_rows()
    spark.sql("DROP TABLE IF EXISTS raw.maint_probe")
    spark.sql("CREATE TABLE raw.maint_probe (id INT, name STRING, v DOUBLE) USING iceberg")
    query(stack, "DROP TABLE IF EXISTS marts.maint_probe")
    query(stack, "CREATE TABLE marts.maint_probe (id INTEGER, name VARCHAR, v DOUBLE)")
    for chunk in range(0, len(rows), 3):
        part = rows[chunk:chunk + 3]
        spark.createDataFrame(part, "id INT, name STRING, v DOUBLE").writeTo("raw.maint_probe").append()
        values = ", ".join(f"({i}, '{n}', {v})" for i, n, v in part)
        query(stack, f"INSERT INTO marts.maint_probe VALUES {values}")
    yield [("raw", "maint_probe"), ("marts", "maint_probe")]
    spark.sql("DROP TABLE IF EXISTS raw.maint_probe")
    query(stack, "DROP TABLE IF EXISTS marts.maint_probe")


def _put_orphan(stack, schema, table) -> str:
    """A file in the table's data folder that no snapshot references, written just now."""
    from lakehouse.stack.provision import minio_root_clients

    location = query(stack, f"SELECT \"$path\" FROM {schema}.\"{table}\" LIMIT 1")[0][0]
    folder = location.rsplit("/", 1)[0]
    key = f"{folder.split('/', 3)[3]}/orphan-in-flight.parquet"
    s3, _ = minio_root_clients(stack)
    import io

    s3.put_object(stack.warehouse_bucket, key, io.BytesIO(b"not referenced yet"), 18)
    return key


def test_maintenance_dag_compacts_and_queries_answer_the_same(stack, small_file_tables):
    from lakehouse.stack.provision import minio_root_clients

    checks = {f"{s}.{t}": f"SELECT id, name, v FROM {s}.{t} ORDER BY id" for s, t in small_file_tables}
    checks["raw.network_a"] = ("SELECT _group_number, count(*), count(DISTINCT station_code), "
                               "round(sum(pm25), 6) FROM raw.network_a GROUP BY 1 ORDER BY 1")
    checks["audit.ingestion_log"] = "SELECT batch_id, status, rows_in FROM audit.ingestion_log ORDER BY 1, 2"
    before = {name: query(stack, sql) for name, sql in checks.items()}
    files_before = {f"{s}.{t}": _data_files(stack, s, t) for s, t in small_file_tables}
    assert all(n >= 12 for n in files_before.values()), files_before
    orphans = [_put_orphan(stack, s, t) for s, t in small_file_tables]

    run = dags_test("iceberg_maintenance")
    log = run.stdout + run.stderr
    for layer in ("raw", "quarantine", "audit", "staging", "intermediate", "marts"):
        assert f"maintain --layer {layer}" in log

    files_after = {f"{s}.{t}": _data_files(stack, s, t) for s, t in small_file_tables}
    assert all(files_after[k] < files_before[k] for k in files_before), (files_before, files_after)
    assert {name: query(stack, sql) for name, sql in checks.items()} == before
    s3, _ = minio_root_clients(stack)
    for key in orphans:  # younger than the 7-day margin: a write in flight, kept
        assert s3.stat_object(stack.warehouse_bucket, key).size == 18


def _api_token(settings) -> dict:
    resp = requests.post(f"{settings.airflow_url}/auth/token", timeout=10,
                         json={"username": settings.airflow_admin_user,
                               "password": settings.airflow_admin_password.get_secret_value()})
    assert resp.status_code in (200, 201), resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def _runs(settings, headers, dag_id, since):
    resp = requests.get(f"{settings.airflow_url}/api/v2/dags/{dag_id}/dagRuns", headers=headers, timeout=10,
                        params={"order_by": "-run_after", "limit": 20})
    resp.raise_for_status()
    return [r for r in resp.json()["dag_runs"]
            if r.get("start_date") and datetime.fromisoformat(r["start_date"]) >= since]


def _wait_for(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_scheduled_runs_fail_clearly_while_the_api_is_down_and_recover(stack):
    dag_id = "ingest_network_b"
    rpc = supervisor.client(stack)
    headers = _api_token(stack)
    assert requests.get(f"{stack.airflow_url}/api/v2/dags", timeout=10).status_code == 401  # no token, no API
    since = datetime.now(timezone.utc) - timedelta(seconds=1)
    rpc.supervisor.stopProcess("simulator", True)
    try:
        lakehouse("airflow", "dags", "unpause", dag_id)
        failed = _wait_for("a failed run", lambda: [r for r in _runs(stack, headers, dag_id, since)
                                                    if r["state"] == "failed"], timeout=420)
    finally:
        rpc.supervisor.startProcess("simulator", True)
    try:
        run_id = failed[0]["dag_run_id"]
        logs = sorted((stack.airflow_home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" /
                       "task_id=ingest").glob("attempt=*.log"))
        assert len(logs) == 1 + stack.ingest_retries, logs  # retried, then gave up
        text = logs[-1].read_text()
        assert "network_b group" in text and "failed after 4 attempts" in text
        assert "is the batch API up?" in text
        assert f"network_b/g{GROUP}/failed/" in text  # the failed batch's id
        recovered = _wait_for("a successful run after the API came back",
                              lambda: [r for r in _runs(stack, headers, dag_id, since)
                                       if r["state"] == "success"], timeout=420)
        assert recovered
        states = [s for _, s in audit_rows(stack, "network_b")]
        assert "failed" in states and "committed" in states
    finally:
        lakehouse("airflow", "dags", "pause", dag_id)


def test_airflow_status_and_admin_password(stack):
    rows = {r.split()[0]: r for r in lakehouse("status").stdout.splitlines()}
    for name in runtime.COMPONENTS:
        assert "RUNNING" in rows[name] and "healthy" in rows[name], rows[name]
    bad = requests.post(f"{stack.airflow_url}/auth/token", timeout=10,
                        json={"username": stack.airflow_admin_user, "password": "wrong-password"})
    assert bad.status_code == 401
    assert json.loads(runtime.passwords_file(stack).read_text()) == {
        stack.airflow_admin_user: stack.airflow_admin_password.get_secret_value()}
    assert oct(runtime.passwords_file(stack).stat().st_mode & 0o777) == "0o600"
