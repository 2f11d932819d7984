"""`lakehouse demo` (what `make demo` runs) against the test stack."""

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


def _smoke_rows(settings) -> int:
    tables = {r[0] for r in query(settings, "SHOW TABLES FROM audit")}
    if "smoke_load" not in tables:
        return 0
    return query(settings, "SELECT count(*) FROM audit.smoke_load")[0][0]
