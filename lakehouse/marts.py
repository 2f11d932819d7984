"""Coalesced mart builds: one dbt build for everything that arrived, none for nothing.

`lakehouse marts update` is what the scheduler runs after batches commit (the `dbt_build`
DAG). It
1. waits for writes to settle: until no source table of dbt (every contract's raw and
   quarantine table, and audit.ingestion_log) has committed for `settle` seconds, at most
   `settle_max`, so the batches of both sources of one period share a build (counted from
   the newest commit: a run that waited behind another build starts at once);
2. takes the `dbt` lock, then reads the state of those tables: each one's current Iceberg
   metadata location, from the catalog database (one query; every commit writes a new one),
   plus a hash of the dbt project's files;
3. compares it with the last successful build in the ledger (`lakehouse_dbt_builds`, in the
   catalog database beside the locks): if nothing changed, it exits with SKIPPED (99), which
   the DAG marks as skipped, in well under a second;
4. otherwise builds, reading every source at the snapshot that was current just before
   (var source_snapshots, macros/pinned_source.sql): a batch that commits during the build is
   in none of its models and tests, never in some of them. The models are built before the
   data tests (build_phases), in one dbt process that parses the project once. It records the state it read
   before the build, so such a batch costs one more build, and is never left out.

A failed build is recorded too (for `lakehouse marts log`), but only successes count, so
the next run covers everything since the last good build. Maintenance rewrites change a
table's metadata too: the next run then rebuilds once, which is harmless.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from lakehouse.errors import LakehouseError
from lakehouse.paths import REPO_ROOT

if TYPE_CHECKING:
    import psycopg

    from lakehouse.settings import Settings

SKIPPED = 99
LEDGER = "lakehouse_dbt_builds"
DBT_PROJECT = REPO_ROOT / "dbt_project"
# What dbt reads from the project: a change to any of these is a reason to build again.
_PROJECT_GLOBS = ("dbt_project.yml", "packages.yml", "models/**/*", "macros/**/*", "seeds/**/*",
                  "tests/**/*", "snapshots/**/*")


def source_tables(contracts) -> list[str]:
    """The Iceberg tables dbt reads as sources, as `namespace.table`."""
    tables = [f"{ns}.{c.table}" for c in contracts for ns in ("raw", "quarantine")]
    return sorted(set(tables)) + ["audit.ingestion_log"]


def project_hash(project: Path = DBT_PROJECT) -> str:
    """A hash of the dbt project's own files (models, macros, seeds, tests, config)."""
    digest = hashlib.sha256()
    files = sorted({p for g in _PROJECT_GLOBS for p in project.glob(g) if p.is_file()})
    for path in files:
        digest.update(str(path.relative_to(project)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _connect(settings: Settings) -> psycopg.Connection:
    """The catalog database, where the ledger sits beside the locks (same connection settings)."""
    from lakehouse.locks import _connect as connect

    return connect(settings, "marts")


def table_state(conn: psycopg.Connection, settings: Settings, tables: list[str]) -> dict[str, str | None]:
    """Each table's current metadata location (None: the table does not exist yet)."""
    rows = conn.execute("SELECT table_namespace, table_name, metadata_location FROM iceberg_tables "
                        "WHERE catalog_name = %s", (settings.catalog_name,)).fetchall()
    current = {f"{ns}.{name}": loc for ns, name, loc in rows}
    return {t: current.get(t) for t in tables}


def settle(read: Callable[[], dict], quiet: float, limit: float, *, say: Callable[[str], None],
           poll: float = 0.5, quiet_for: float = 0.0) -> dict:
    """Wait until `read()` has not changed for `quiet` seconds, or `limit` seconds passed.
    `quiet_for`: how long the state had been unchanged already when called (the age of the
    newest commit): a run that started long after the last batch builds at once."""
    t0 = time.monotonic()
    last_change = t0 - max(0.0, quiet_for)
    state = read()
    while True:
        now = time.monotonic()
        if now - last_change >= quiet:
            return state
        if now - t0 >= limit:
            say(f"sources still changing after {limit:.0f}s; building what is there now")
            return state
        time.sleep(min(poll, max(0.0, quiet - (now - last_change))) or poll)
        new = read()
        if new != state:
            state, last_change = new, time.monotonic()


def seconds_since_last_commit(settings: Settings, tables: list[str]) -> float:
    """Age of the newest commit among `tables` (their Iceberg metadata's last update), from
    the catalog; 0 when none exists yet."""
    from lakehouse.catalog import catalog

    cat, newest = catalog(settings), None
    for name in tables:
        ident = tuple(name.split("."))
        if cat.table_exists(ident):
            updated = cat.load_table(ident).metadata.last_updated_ms / 1000
            newest = updated if newest is None else max(newest, updated)
    return 0.0 if newest is None else max(0.0, time.time() - newest)


def ensure_ledger(conn: psycopg.Connection) -> None:
    conn.execute(f"""CREATE TABLE IF NOT EXISTS {LEDGER} (
        id bigserial PRIMARY KEY,
        started_at timestamptz NOT NULL,
        finished_at timestamptz NOT NULL,
        status text NOT NULL,
        seconds double precision NOT NULL,
        command text NOT NULL,
        state jsonb NOT NULL)""")
    # what became of the rest of the build, after the publish-first models: done (the other
    # marts built, the data tests passed), deferred (to the next build) or failed; NULL on
    # rows recorded before it was kept
    conn.execute(f"ALTER TABLE {LEDGER} ADD COLUMN IF NOT EXISTS rest text")


def last_success(conn: psycopg.Connection) -> tuple[datetime, dict] | None:
    row = conn.execute(f"SELECT finished_at, state FROM {LEDGER} WHERE status = 'success' "
                       "ORDER BY id DESC LIMIT 1").fetchone()
    return (row[0], row[1]) if row else None


def record(conn: psycopg.Connection, started: datetime, status: str, seconds: float, command: str,
           state: dict, rest: str | None = None) -> None:
    conn.execute(f"INSERT INTO {LEDGER} (started_at, finished_at, status, seconds, command, state, rest) "
                 "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                 (started, datetime.now(timezone.utc), status, seconds, command, json.dumps(state), rest))


def last_complete(conn: psycopg.Connection) -> datetime | None:
    """When the newest complete build (every model built, every data test passed) started,
    if no build failed since; None otherwise (then the next build is complete, whatever else
    is waiting)."""
    row = conn.execute(f"SELECT status, rest, started_at FROM {LEDGER} WHERE status = 'failed' "
                       "OR coalesce(rest, 'done') = 'done' ORDER BY id DESC LIMIT 1").fetchone()
    return row[2] if row and row[0] == "success" else None


def rest_due(newer_waiting: bool, complete_ago: float | None, defer_up_to: float) -> bool:
    """Whether the rest of a build (the marts not tagged publish_first, then the data tests)
    runs now, or is left to the next build.

    It is deferred only when a newer batch has committed during the build (so another build
    follows at once), and the last complete build started less than `defer_up_to` seconds
    ago. The other marts are full rebuilds, so the next build's cover this one's sources too.
    Its tests cover every row that this build's would have: the staging tests read the rows
    ingested since the incremental marts' watermark minus the lookback, and the mart tests
    the days those rows touch (var tests_since and merge_from), a window that reaches back
    past every untested batch while `defer_up_to` is shorter than the lookback. So under a
    steady stream of batches the time series is rebuilt as often as batches arrive, and
    everything else at least every `defer_up_to` seconds."""
    return not newer_waiting or defer_up_to <= 0 or complete_ago is None or complete_ago >= defer_up_to


def log(settings: Settings, limit: int = 20) -> list[tuple]:
    """The newest ledger rows: finished_at, status, seconds, command, tables that changed,
    and what became of the rest of the build (done, deferred, failed; None before it was kept)."""
    with _connect(settings) as conn:
        ensure_ledger(conn)
        rows = conn.execute(f"SELECT finished_at, status, seconds, command, state, rest FROM {LEDGER} "
                            "ORDER BY id DESC LIMIT %s", (limit + 1,)).fetchall()
    out = []
    for i, (finished, status, seconds, command, state, rest) in enumerate(rows[:limit]):
        before = next((r[4] for r in rows[i + 1:] if r[1] == "success"), {})
        out.append((finished, status, seconds, command, changed_tables(state, before), rest))
    return out


def snapshots(settings: Settings, tables: list[str]) -> dict[str, int]:
    """Each source table's current snapshot id (tables without one are left out). The build
    reads every source at these (macros/pinned_source.sql), so all its models and tests see
    the same batches, whatever commits meanwhile."""
    from lakehouse.catalog import catalog

    cat, out = catalog(settings), {}
    # the audit log first: ingestion logs a batch after its raw and quarantine commits, so
    # every batch in the pinned log has its rows in the raw and quarantine pinned after it
    for name in sorted(tables, key=lambda t: not t.startswith("audit.")):
        snapshot = cat.load_table(tuple(name.split("."))).metadata.current_snapshot_id
        if snapshot is not None:
            out[name] = snapshot
    return out


def merge_window(settings: Settings, pins: dict[str, int], lookback_minutes: float) -> dict | None:
    """What the incremental marts of this build may change, read at its pinned snapshots:
    - `tests_since`: the older watermark of the two incremental marts, minus the lookback.
      Raw rows ingested after it are the ones this build reads as new, and the staging tests
      look at those only (dbt_project.yml);
    - `touched_days`: the UTC days (`YYYY-MM-DD`) of those rows' events. Both incremental
      marts recompute only these days' partitions, instead of each looking them up again (a
      scan of its input that cost seconds);
    - `merge_from`: the first of those days. The MERGEs skip every partition of their own
      table before it (macros/merge_window.sql).
    So a build costs what the new batches touch, not the history. None when there is no
    incremental mart yet: the models then look for themselves."""
    from lakehouse.trino import connect

    conn = connect(settings, user="dbt", password=settings.trino_dbt_password.get_secret_value())
    try:
        cur = conn.cursor()
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'marts' "
                    "AND table_name IN ('fct_observations', 'fct_observations_hourly')")
        if {r[0] for r in cur.fetchall()} != {"fct_observations", "fct_observations_hourly"}:
            return None
        raw = [t for t in pins if t.startswith("raw.")]
        if not raw:
            return None
        cur.execute("SELECT CAST(least((SELECT max(_ingested_at) FROM marts.fct_observations), "
                    "(SELECT max(_last_ingested_at) FROM marts.fct_observations_hourly)) "
                    f"- INTERVAL '{lookback_minutes:g}' MINUTE AS varchar)")
        since = cur.fetchall()[0][0]
        if since is None:
            return None
        # UTC days, written as dates: the marts' event_time_utc and hour_utc have no zone
        rows = " UNION ".join(f"SELECT DISTINCT CAST(CAST(_event_time AT TIME ZONE 'UTC' AS date) AS varchar) AS d "
                              f"FROM {t} FOR VERSION AS OF {pins[t]} WHERE _ingested_at > TIMESTAMP '{since}'"
                              for t in raw)
        cur.execute(f"SELECT d FROM ({rows}) ORDER BY d")
        days = [r[0] for r in cur.fetchall()]
        # no new raw rows (only quarantine or the audit log changed): nothing to merge
        return {"touched_days": days, "tests_since": since, **({"merge_from": days[0]} if days else {})}
    finally:
        conn.close()


def lookback_minutes(dbt_args: list[str], project: Path = DBT_PROJECT) -> float:
    """var incremental_lookback_minutes, as the build will see it (--vars, else dbt_project.yml)."""
    import yaml

    given = {}
    if "--vars" in dbt_args and dbt_args.index("--vars") + 1 < len(dbt_args):
        given = yaml.safe_load(dbt_args[dbt_args.index("--vars") + 1]) or {}
    if isinstance(given, dict) and "incremental_lookback_minutes" in given:
        return float(given["incremental_lookback_minutes"])
    return float(yaml.safe_load((project / "dbt_project.yml").read_text())["vars"]["incremental_lookback_minutes"])


def with_vars(dbt_args: list[str], extra: dict) -> list[str]:
    """`dbt_args` with `extra` merged into its --vars (added if it has none)."""
    import yaml

    args, given = list(dbt_args), {}
    if "--vars" in args:
        i = args.index("--vars")
        if i + 1 >= len(args):
            raise LakehouseError("--vars needs a value", "for example --vars '{aq_thresholds: {pm25: 25}}'")
        given = yaml.safe_load(args[i + 1]) or {}
        if not isinstance(given, dict):
            raise LakehouseError(f"--vars {args[i + 1]!r} is not a mapping", "give --vars '{name: value}'")
        del args[i:i + 2]
    return [*args, "--vars", json.dumps({**given, **extra}, sort_keys=True)]


def seeds_changed(state: dict, previous: tuple[datetime, dict] | None) -> bool:
    """Whether the seeds need loading: no successful build yet, or the dbt project changed
    (the seeds are its files). Otherwise the seed tables hold what the last build loaded."""
    return previous is None or previous[1].get("dbt_project") != state.get("dbt_project")


TESTS = "data tests"  # the phase of a build that runs its data tests
OTHERS = "other models"  # the phase that builds the models not tagged publish_first
FIRST = "tag:publish_first"  # models whose freshness matters most (the hourly time series)
_SELECTING = ("--select", "-s", "--models", "-m", "--selector")


def build_phases(args: list[str], *, gate: bool = False, seeds: bool = True) -> list[tuple[str, list[str]]]:
    """The dbt build invocations of one mart build, each with a name, in order.

    By default the models publish first and the data tests follow, in a later invocation
    that reads the same pinned snapshots (var source_snapshots) and the tables just built:
    - the marts are fresh as soon as the models are built, not after 68 tests. The models
      tagged `publish_first` (the hourly time series) and everything they read go before
      the other marts, which would otherwise share the 2 cores with them;
    - a failing data test still fails the build (the scheduler's task goes red, and the
      ledger records a failure, so the next run builds and tests again), but the models
      downstream of it have been published by then.
    Rows that break the contract never get that far: ingestion quarantines them. The data
    tests are the second line (staging, the marts' keys, the reconciliation of raw to marts).
    `gate=True` keeps dbt's own order instead, one invocation in which each model's tests
    run before its children, which a failure skips: slower, but nothing past a failed test
    is published. Unit tests run with the models (before each one), in both modes. A
    build given its own selection (--select) builds that selection's models in one phase.
    Seeds are left out when `seeds` is False: they load only when the project changed."""
    skip_seeds = [] if seeds else ["--exclude-resource-type", "seed"]
    if gate:
        return [("build", [*args, *skip_seeds])]
    no_tests = ["--exclude-resource-type", "test", *skip_seeds]
    tests = (TESTS, [*args, "--resource-type", "test"])
    if any(a in _SELECTING or a.startswith(tuple(f"{s}=" for s in _SELECTING)) for a in args):
        return [("models", [*args, *no_tests]), tests]
    return [("models first", [*args, "--select", f"+{FIRST}", *no_tests]),
            (OTHERS, [*args, "--exclude", f"+{FIRST}", *no_tests]),
            tests]


def parse_args(args: list[str]) -> list[str]:
    """What of a build's args parsing reads: --vars (a var can set a model's config) and the
    profile's target."""
    out = []
    for flag in ("--vars", "--target", "-t", "--profile"):
        if flag in args and args.index(flag) + 1 < len(args):
            out += [flag, args[args.index(flag) + 1]]
    return out


def changed_tables(state: dict, before: dict) -> list[str]:
    return sorted(k for k in state if state.get(k) != before.get(k))


def update(settings: Settings, dbt_args: list[str], *, settle_seconds: float = 5.0,
           settle_max_seconds: float = 20.0, force: bool = False, gate: bool = False,
           defer_rest: float = 0.0, keep_up: float = 0.0, all_rows: bool = False,
           say: Callable[[str], None] = print) -> int:
    """Build the marts if a source table or the dbt project changed since the last successful
    build; return 0 after a build, SKIPPED when nothing changed. A failed build raises.
    `gate`: one `dbt build`, each model's data tests before its children (build_phases).
    `defer_rest`: seconds for which the rest of a build (the marts not tagged publish_first,
    and the data tests) may be left to the next build while newer batches wait (rest_due);
    0 completes every build.
    `keep_up`: for this many seconds, a build that ends with newer commits waiting is followed
    at once by another, in this process: no scheduling round, no new process, between them.
    `all_rows`: no window (vars merge_from, tests_since, touched_days): the incremental marts
    look for what changed themselves, and every data test checks every row (the nightly
    check). The sources are still pinned."""
    from lakehouse.contracts import load_all

    tables = source_tables(load_all().values())
    lookback = lookback_minutes(dbt_args)
    if defer_rest > 0 and (gate or all_rows or defer_rest >= lookback * 60):
        raise LakehouseError(
            f"the rest of a build can be deferred for {defer_rest:g}s only without --gate or --all-rows, and "
            f"for less than the incremental lookback ({lookback:g} min): the next build's data tests reach "
            "back that far",
            "lower --defer-rest, or raise var incremental_lookback_minutes")
    until = time.monotonic() + keep_up
    with _connect(settings) as conn:
        ensure_ledger(conn)

        def read() -> dict:
            return {**table_state(conn, settings, tables), "dbt_project": project_hash()}

        builds = 0
        while True:
            if settle_seconds > 0:
                settle(read, settle_seconds, settle_max_seconds, say=say,
                       quiet_for=seconds_since_last_commit(settings, tables))
            state = _build(settings, conn, read, tables, dbt_args, lookback, force=force and not builds,
                           gate=gate, defer_rest=defer_rest, all_rows=all_rows, say=say)
            if state is None:
                return SKIPPED if not builds else 0
            builds += 1
            newer = changed_tables(read(), state)
            if not (newer and time.monotonic() < until):
                return 0
            say(f"committed during the build: {', '.join(newer)}; building again at once "
                f"(build {builds + 1} of this run; --keep-up {keep_up:g}s)")


def _build(settings: Settings, conn: psycopg.Connection, read: Callable[[], dict], tables: list[str],
           dbt_args: list[str], lookback: float, *, force: bool, gate: bool, defer_rest: float,
           all_rows: bool, say: Callable[[str], None]) -> dict | None:
    """One build under the `dbt` lock (update); the state it recorded, or None when nothing
    changed since the last successful build."""
    from lakehouse import dbt, locks

    command = " ".join(["dbt", "build", *dbt_args])
    with locks.hold(settings, "dbt", purpose="lakehouse marts update", say=say):
        state = read()
        previous = last_success(conn)
        if previous and not force:
            changed = changed_tables(state, previous[1])
            if not changed:
                say(f"nothing changed since the build that finished at {previous[0]:%Y-%m-%d %H:%M:%S %Z} "
                    f"({len(tables)} source tables and the dbt project unchanged); no build")
                return None
            say(f"changed since the last build: {', '.join(changed)}")
        elif not previous:
            say("no successful build recorded yet: building")
        if any(state[t] is None for t in tables):
            from lakehouse.demo import init_namespaces, init_source_tables

            init_namespaces(settings)
            init_source_tables(settings)
            state = read()
        dbt.require_sources(settings)
        started, t0 = datetime.now(timezone.utc), time.monotonic()  # before the pins: a lower bound
        pins = snapshots(settings, tables)
        extra = {"source_snapshots": pins}
        if not all_rows:
            extra.update(merge_window(settings, pins, lookback) or {})
        args = with_vars(dbt_args, extra)
        seeds = "--full-refresh" in args or seeds_changed(state, previous)
        phases = [(name, ["build", *a]) for name, a in build_phases(args, gate=gate, seeds=seeds)]

        decided: list[bool] = []

        def rest_now() -> bool:  # asked before the other marts, and again before the tests
            if not decided:
                done = last_complete(conn)
                ago = None if done is None else (datetime.now(timezone.utc) - done).total_seconds()
                newer = changed_tables(read(), state)
                decided.append(rest_due(bool(newer), ago, defer_rest))
                if not decided[0]:
                    say(f"the publish-first marts are built; the rest ({' and '.join(ask)}) is left to the next "
                        f"build, which starts at once for what committed meanwhile ({', '.join(newer)}) and covers "
                        f"both builds (the last complete build started {ago:.0f}s ago; at most {defer_rest:g}s)")
            return decided[0]

        ask = {name: rest_now for name, _ in phases if name in (OTHERS, TESTS)} if defer_rest > 0 else {}
        try:
            left_out = dbt.run_phases(settings, parse_args(args), phases, ask=ask)
        except LakehouseError as exc:
            failed_tests = isinstance(exc, dbt.PhaseFailed) and exc.phase == TESTS
            record(conn, started, "failed", time.monotonic() - t0, command, state,
                   "failed" if failed_tests else None)
            if failed_tests:
                raise LakehouseError(f"the marts were built, but their data tests failed: {exc.message}",
                                     exc.hint) from exc
            raise
        record(conn, started, "success", time.monotonic() - t0, command, state,
               "deferred" if left_out else "done")
        say(f"built in {time.monotonic() - t0:.1f}s" + (f" ({' and '.join(left_out)} deferred)" if left_out else ""))
    return state
