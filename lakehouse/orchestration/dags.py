"""What the DAG files in airflow_dags/ share: settings, timetables, assets, the CLI call.

Scope: runs when Airflow parses a DAG file, so it reads only local files (the env file
and the contracts) and never the network. Tasks run the `lakehouse` CLI, with the same
Python that parses the DAGs (Airflow lives in the platform's venv).
"""

from __future__ import annotations

import shlex
import sys
from datetime import datetime, timedelta, timezone

from lakehouse.settings import REPO_ROOT, Settings, load_settings

# Fixed, so the DAGs are the same at every parse (a moving start date makes a new DAG
# version each time). No run before this is ever created: catchup is off.
START_DATE = datetime(2026, 1, 1, tzinfo=timezone.utc)
PLATFORM_OWNER = "data-platform"
URI_SCHEME = "x-lakehouse"


def settings() -> Settings:
    """The stack's settings: its env file, overridden by the LAKEHOUSE_* variables that
    supervisord gives the dag-processor. Never generates or changes the env file."""
    return load_settings(create=False)


def timetable(schedule: str):
    """`*/5 * * * *` -> intervals between cron ticks; `30s` -> fixed 30-second intervals.

    Either way a run covers a data interval [start, end) and starts when it ends.
    (A bare cron string would give Airflow 3's trigger timetable: no interval.)
    """
    from airflow.timetables.interval import CronDataIntervalTimetable, DeltaDataIntervalTimetable

    from lakehouse.orchestration.schedule import period

    delta = period(schedule)
    if delta is not None:
        return DeltaDataIntervalTimetable(delta)
    return CronDataIntervalTimetable(schedule, timezone="UTC")


def default_args(s: Settings, owner: str = PLATFORM_OWNER, timeout_minutes: float | None = None) -> dict:
    delay = timedelta(seconds=s.ingest_retry_delay_seconds)
    return {
        "owner": owner,
        "retries": s.ingest_retries,
        "retry_delay": delay,
        "retry_exponential_backoff": True,
        "max_retry_delay": max(delay, timedelta(minutes=10)),
        "execution_timeout": timedelta(minutes=timeout_minutes or s.ingest_timeout_minutes),
        "depends_on_past": False,
    }


def cli(*commands: tuple[str, ...] | str) -> str:
    """A shell command running `lakehouse <args>` from the repository root: `cli("dbt",
    "build")`, or several in turn, each only if the one before succeeded:
    `cli(("init",), ("dbt", "build"))`. Each runs through lakehouse.orchestration.task,
    which hands it only the secrets its subcommand declares."""
    if commands and isinstance(commands[0], str):
        commands = (commands,)
    lines = [" ".join(shlex.quote(a) for a in (sys.executable, "-m", "lakehouse.orchestration.task", *args))
             for args in commands]
    return f"cd {shlex.quote(str(REPO_ROOT))} && " + " && ".join(lines)


def table_asset(s: Settings, namespace: str, table: str):
    """The Airflow asset for one Iceberg table: a stable name and URI, no host or port."""
    from airflow.sdk import Asset

    return Asset(name=f"{s.catalog_name}.{namespace}.{table}",
                 uri=f"{URI_SCHEME}://{s.catalog_name}/{namespace}/{table}")
