"""`lakehouse demo` (what `make demo` runs) against the test stack, with the scheduler
running and every DAG unpaused while it runs (the session's `warehouse` fixture)."""

import pytest

from lakehouse.settings import env_file_path
from lakehouse.trino import query

from .conftest import lakehouse

pytestmark = [pytest.mark.superset, pytest.mark.airflow]


def test_demo_with_the_dags_firing_ingests_builds_imports_and_says_where_to_look(warehouse):
    stack, proc = warehouse["settings"], warehouse["demo"]
    assert "Spark wrote 1 row; Trino sees" in proc.stderr
    schemas = {r[0] for r in query(stack, "SHOW SCHEMAS")}
    assert {"raw", "quarantine", "audit", "staging", "marts"} <= schemas
    assert stack.trino_url in proc.stdout and "make sql" in proc.stdout
    table = [line.split() for line in _batch_table(proc.stdout)]
    assert len(table) == 20  # 10 batches x 2 networks
    assert sorted((r[0], int(r[1])) for r in table) == sorted(
        (s, b) for s in ("network_a", "network_b") for b in range(1, 11))
    for source, batch, rows_in, valid, quarantined, status in table:
        # batch 1 may have been fetched first by the scheduled DAG (same API, same group)
        assert status == "committed" or (status == "replayed" and batch == "1"), (source, batch, status)
        assert int(rows_in) == int(valid) + int(quarantined) > 0
    # ... builds the marts and summarises them through Trino
    assert "dbt build done" in proc.stderr
    assert "states with the highest PM2.5 on the latest day" in proc.stdout
    quality = _section(proc.stdout, "marts: data quality per source")
    assert [line.split()[0] for line in quality] == ["network_a", "network_b"]
    # ... imports the dashboards, and ends with their addresses and where the passwords are
    assert "imported 1 databases, 6 datasets, 9 charts, 2 dashboards" in proc.stderr
    tail = proc.stdout[proc.stdout.index("Dashboards (Superset):"):]
    for slug in ("air-quality-overview", "data-quality"):
        assert f"{stack.superset_url}/superset/dashboard/{slug}/" in tail
    assert "LAKEHOUSE_SUPERSET_ADMIN_PASSWORD" in tail and str(env_file_path()) in tail


def test_a_second_demo_replays_every_batch_and_writes_nothing(warehouse):
    stack = warehouse["settings"]
    before = _counts(stack)
    again = lakehouse("demo", timeout=1800)
    statuses = [line.split()[-1] for line in _batch_table(again.stdout)]
    assert statuses == ["replayed"] * 20
    after = _counts(stack)
    assert after["smoke"] == before["smoke"] + 1  # the smoke load appends one row per run
    assert {k: v for k, v in after.items() if k != "smoke"} == {k: v for k, v in before.items() if k != "smoke"}


def _counts(settings) -> dict:
    group = settings.group_number
    return {
        "smoke": query(settings, "SELECT count(*) FROM audit.smoke_load")[0][0],
        "raw": query(settings, f"SELECT count(*) FROM raw.network_a WHERE _group_number = {group}")[0][0]
        + query(settings, f"SELECT count(*) FROM raw.network_b WHERE _group_number = {group}")[0][0],
        "audit": query(settings, f"SELECT count(*) FROM audit.ingestion_log WHERE group_number = {group}")[0][0],
    }


def _section(stdout: str, title: str) -> list[str]:
    """The indented rows under the line starting with `title` (after its header row)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("  "):
            break
        rows.append(line)
    return rows


def _batch_table(stdout: str) -> list[str]:
    return _section(stdout, "rows per batch")
