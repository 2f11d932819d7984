"""Platform-wide locks, so that two commands started at once never break each other.

Scope: PostgreSQL advisory locks in the catalog database, which every writer of the
lakehouse already reaches (as the catalog role). A lock belongs to the connection that
took it: it is released when the command ends, and also when it dies (kill -9 included),
so no stale lock file ever needs cleaning. Writes nothing.

Locks used (docs/architecture.md, "Commands that never collide"):
- `dbt`: every dbt command that writes to the warehouse (build, run, test, seed, ...), from
  a person, `make demo` or Airflow; and maintenance of the layers dbt writes;
- `ingest:<source>/g<group>/b<batch>`: one batch, so a replay is decided once;
- `table:<namespace>.<table>`: shared by writers that append (ingestion), exclusive for
  maintenance that rewrites the table's files.
"""

from __future__ import annotations

import hashlib
import os
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator

import psycopg

if TYPE_CHECKING:
    from lakehouse.settings import Settings

# The first half of every two-key advisory lock the platform takes ("LKHS"), so ours never
# meet another application's advisory locks in the same database.
NAMESPACE = 0x4C4B4853


def lock_key(name: str) -> int:
    """A stable positive 31-bit key for a lock name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") & 0x7FFFFFFF


def _connect(settings: Settings, purpose: str) -> psycopg.Connection:
    s = settings
    return psycopg.connect(host=s.postgres_address, port=s.postgres_port, dbname=s.catalog_db,
                           user=s.catalog_db_user, password=s.catalog_db_password.get_secret_value(),
                           autocommit=True, connect_timeout=10,
                           application_name=f"lakehouse {purpose} (pid {os.getpid()})"[:63])


def holders(conn: psycopg.Connection, name: str) -> list[str]:
    """Who holds `name` now: each holder's application name and since when."""
    rows = conn.execute(
        "SELECT a.application_name, a.backend_start FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 2",
        (NAMESPACE, lock_key(name))).fetchall()
    return [f"{app or 'unknown'} since {start:%H:%M:%S}" for app, start in rows]


@contextmanager
def hold(settings: Settings, name: str, *, shared: bool = False, purpose: str = "",
         say: Callable[[str], None] | None = None, report_every: float = 30.0) -> Iterator[None]:
    """Hold lock `name` for the block: wait while another command holds it (saying who,
    every `report_every` seconds), never fail because of it. `shared` locks coexist with
    each other and exclude an exclusive one."""
    mode = "_shared" if shared else ""
    key = (NAMESPACE, lock_key(name))
    with _connect(settings, purpose or name) as conn:
        got = conn.execute(f"SELECT pg_try_advisory_lock{mode}(%s, %s)", key).fetchone()[0]
        if not got:
            t0 = time.monotonic()
            if say:
                say(f"waiting for the {name} lock, held by {'; '.join(holders(conn, name)) or 'another command'}")
            while not got:
                time.sleep(0.5)
                got = conn.execute(f"SELECT pg_try_advisory_lock{mode}(%s, %s)", key).fetchone()[0]
                if not got and say and time.monotonic() - t0 >= report_every:
                    say(f"  still waiting for the {name} lock ({time.monotonic() - t0:.0f}s), held by "
                        f"{'; '.join(holders(conn, name)) or 'another command'}")
                    report_every += 30
            if say:
                say(f"got the {name} lock after {time.monotonic() - t0:.0f}s")
        yield
