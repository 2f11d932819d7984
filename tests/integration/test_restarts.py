"""State survives a stop and a start; `up` recovers after kill -9 of supervisord and children."""

import os
import signal
import time
import uuid

import psutil

from lakehouse.catalog import catalog
from lakehouse.stack import supervisor
from lakehouse.stack.services import ORDER
from lakehouse.trino import query

from .conftest import lakehouse


def _status():
    """(exit code, {service: (supervisor state, health mark)}) from `lakehouse status`."""
    proc = lakehouse("status", check=False)
    rows = {}
    for line in proc.stdout.splitlines():
        service, state, _pid, mark = line.split()[:4]
        rows[service] = (state, mark)
    return proc.returncode, rows


def test_data_survives_stop_and_start(stack):
    name = f"marts.it_persist_{uuid.uuid4().hex[:8]}"
    query(stack, f"CREATE TABLE {name} AS SELECT * FROM (VALUES (1, 'a'), (2, 'b'), (3, NULL)) AS t(id, v)")
    before = query(stack, f"SELECT id, v FROM {name} ORDER BY id")
    lakehouse("down")
    code, rows = _status()
    assert code == 3 and rows == {s: ("DOWN", "DOWN") for s in ORDER}
    lakehouse("up")
    assert query(stack, f"SELECT id, v FROM {name} ORDER BY id") == before == [(1, "a"), (2, "b"), (3, None)]
    assert name.split(".")[1] in {t[1] for t in catalog(stack).list_tables("marts")}


def test_up_after_kill9_of_supervisor_and_children_comes_back_healthy(stack):
    name = f"marts.it_kill9_{uuid.uuid4().hex[:8]}"
    query(stack, f"CREATE TABLE {name} AS SELECT 42 AS answer")
    pid = supervisor.daemon_pid(stack)
    assert pid and psutil.pid_exists(pid)
    victims = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    assert len(victims) >= 4, victims  # supervisord + postgres (+ its workers) + minio + trino
    for p in victims:
        os.kill(p.pid, signal.SIGKILL)
    psutil.wait_procs(victims, timeout=30)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in victims)
    # what a crash leaves behind: supervisord's pid file and socket, postgres' postmaster.pid
    assert supervisor.pid_path(stack).exists() and supervisor.socket_path(stack).exists()
    assert (stack.data_path / "postgres" / "postmaster.pid").exists()

    t0 = time.monotonic()
    lakehouse("up")
    assert time.monotonic() - t0 < 300
    code, rows = _status()
    assert code == 0 and rows == {s: ("RUNNING", "healthy") for s in ORDER}
    assert query(stack, f"SELECT answer FROM {name}") == [(42,)]
    assert supervisor.daemon_pid(stack) != pid
