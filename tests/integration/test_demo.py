"""`lakehouse demo` (what `make demo` runs) against the test stack."""

from lakehouse.settings import env_file_path
from lakehouse.trino import query

from .conftest import lakehouse


def test_demo_creates_namespaces_smoke_loads_and_says_where_to_look(stack):
    before = _smoke_rows(stack)
    proc = lakehouse("demo")
    assert "Spark wrote 1 row; Trino sees" in proc.stderr
    assert _smoke_rows(stack) == before + 1
    schemas = {r[0] for r in query(stack, "SHOW SCHEMAS")}
    assert {"raw", "quarantine", "audit", "staging", "marts"} <= schemas
    assert stack.trino_url in proc.stdout and "make sql" in proc.stdout
    table = [line.split() for line in _batch_table(proc.stdout)]
    assert len(table) == 20  # 10 batches x 2 networks
    assert sorted((r[0], int(r[1])) for r in table) == sorted(
        (s, b) for s in ("network_a", "network_b") for b in range(1, 11))
    for source, batch, rows_in, valid, quarantined, status in table:
        assert status in ("committed", "replayed") and int(rows_in) == int(valid) + int(quarantined) > 0
    # a second demo replays every batch and writes nothing new
    again = lakehouse("demo")
    statuses = [line.split()[-1] for line in _batch_table(again.stdout)]
    assert statuses == ["replayed"] * 20
    # ... then builds the marts and summarises them through Trino
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


def _smoke_rows(settings) -> int:
    tables = {r[0] for r in query(settings, "SHOW TABLES FROM audit")}
    if "smoke_load" not in tables:
        return 0
    return query(settings, "SELECT count(*) FROM audit.smoke_load")[0][0]
