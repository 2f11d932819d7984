"""State survives a stop and a start; `up` recovers after kill -9 of supervisord alone,
ending the servers it orphaned (gunicorn and the JVMs included) before starting again."""

import os
import signal
import time
import uuid

import psutil
import pytest

from lakehouse.catalog import catalog
from lakehouse.stack import manager, registry, supervisor
from lakehouse.trino import query

from .conftest import lakehouse

# Every server, so the orphans of every service are in play.
pytestmark = [pytest.mark.superset, pytest.mark.airflow]


def _status():
    """(exit code, {program: (supervisor state, health mark)}) from `lakehouse status`."""
    proc = lakehouse("status", check=False)
    rows = {}
    for line in proc.stdout.splitlines():
        program, state, _pid, mark = line.split()[:4]
        rows[program] = (state, mark)
    return proc.returncode, rows


def test_data_survives_stop_and_start_and_spark_connect_serves_new_sessions(stack):
    from lakehouse.spark import spark_session

    name = f"marts.it_persist_{uuid.uuid4().hex[:8]}"
    query(stack, f"CREATE TABLE {name} AS SELECT * FROM (VALUES (1, 'a'), (2, 'b'), (3, NULL)) AS t(id, v)")
    before = query(stack, f"SELECT id, v FROM {name} ORDER BY id")
    probe = f"{stack.catalog_name}.raw.it_warm_{uuid.uuid4().hex[:8]}"
    spark = spark_session(stack, "it-restarts")
    spark.sql(f"CREATE TABLE {probe} (id INT) USING iceberg")
    spark.sql(f"INSERT INTO {probe} VALUES (1)")
    spark.stop()
    lakehouse("down")
    code, rows = _status()
    assert code == 3 and rows == {p: ("DOWN", "DOWN") for p in registry.load().program_names()}
    assert manager.stack_processes(stack) == []
    lakehouse("up")
    assert query(stack, f"SELECT id, v FROM {name} ORDER BY id") == before == [(1, "a"), (2, "b"), (3, None)]
    assert name.split(".")[1] in {t[1] for t in catalog(stack).list_tables("marts")}
    # the restarted Spark Connect server serves a new session on the same catalog
    spark = spark_session(stack, "it-restarts")
    spark.sql(f"INSERT INTO {probe} VALUES (2)")
    assert sorted(r["id"] for r in spark.table(probe).collect()) == [1, 2]
    spark.sql(f"DROP TABLE {probe}")
    spark.stop()


def test_up_after_kill9_of_supervisord_alone_ends_its_orphans_and_comes_back_healthy(stack):
    name = f"marts.it_kill9_{uuid.uuid4().hex[:8]}"
    query(stack, f"CREATE TABLE {name} AS SELECT 42 AS answer")
    pid = supervisor.daemon_pid(stack)
    assert pid and psutil.pid_exists(pid)
    programs = {p["name"]: p["pid"] for p in supervisor.client(stack).supervisor.getAllProcessInfo()}
    children = psutil.Process(pid).children(recursive=True)
    assert set(programs) == set(registry.load().program_names()) and all(programs.values()), programs
    live = [c for c in children if c.status() != psutil.STATUS_ZOMBIE]  # an exited child not yet reaped
    gunicorn = [c for c in live if "gunicorn" in " ".join(c.cmdline())]
    assert len(gunicorn) >= 2, "Superset's gunicorn master and workers should be running"
    os.kill(pid, signal.SIGKILL)
    psutil.Process(pid).wait(timeout=30) if psutil.pid_exists(pid) else None
    time.sleep(1)
    orphans = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    # supervisord died alone: every server it started lives on, orphaned
    assert {c.pid for c in orphans} >= set(programs.values())
    # ... and is recognised as this stack's, even the ones that retitled themselves. A short
    # child (a PostgreSQL backend, a task process) may end by itself while the process table
    # is read: only one still alive after the scan counts as missed.
    found = {p.pid for p in manager.stack_processes(stack)}
    missed = [c for c in orphans if c.pid not in found and c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert missed == [], [(c.pid, c.cmdline()[:4], c.ppid()) for c in missed]

    t0 = time.monotonic()
    up = lakehouse("up")
    assert time.monotonic() - t0 < 300
    assert "leftover process(es) of an earlier run of this stack" in up.stderr
    gone = [c for c in orphans if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert gone == [], [(c.pid, c.cmdline()[:3]) for c in gone]
    code, rows = _status()
    assert code == 0 and rows == {p: ("RUNNING", "healthy") for p in registry.load().program_names()}
    assert query(stack, f"SELECT answer FROM {name}") == [(42,)]
    assert supervisor.daemon_pid(stack) != pid
