"""dbt: rebuild staging, intermediate and marts whenever a raw or quarantine table changes.

Triggered by Airflow assets, not by a clock: each ingestion run that wrote a batch marks
its source's raw and quarantine tables as updated, and any one of them starts a run.
Updates that arrive while a build runs are collected into the next run (one at a time).

One task, `lakehouse marts update` (lakehouse/marts.py), which coalesces:
- it waits until the source tables have had no commit for 5 s (at most 20 s), so both
  sources' batches of one period share a build;
- it builds only if a source table or the dbt project changed since the last successful
  build (its ledger), and otherwise ends at once with exit 99, which marks the task
  skipped. A run queued by a batch that the previous build already covered costs a second,
  not a build.
- the hourly time series publishes first, then the other marts are built and the data tests
  run; when batches committed meanwhile, that rest is left to the next build, which starts
  at once and covers both builds, at most LAKEHOUSE_DBT_DEFER_REST_SECONDS (300) after the
  last complete build. A batch then waits for the time series of one build, not for the
  other marts and 68 tests;
- when batches committed during a build, the task builds again at once, for up to
  LAKEHOUSE_DBT_KEEP_UP_SECONDS (300), rather than end and wait for the scheduler to start
  the next run (a scheduling round, a process start and a dbt parse: 10-20 s here). The
  runs queued meanwhile find nothing new and are skipped in a second.
The build is `dbt build` (models, then their data tests; dbt's unit tests check the SQL
against fixed inputs, which no batch changes, so they run in CI and `make dbt-build`, not
here). Missing source tables are created first, so the first build doesn't wait for every
source. One Airflow task rather than one per model with astronomer-cosmos: the models are
incremental and build in seconds, while every Airflow task costs a process start and
scheduling delay on a 2-core machine. dbt's own log names the failing model or test, and
its failed tests print their offending rows.
"""

from __future__ import annotations

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG
from airflow.sdk.definitions.asset import AssetAny

from lakehouse.contracts import load_all
from lakehouse.marts import SKIPPED
from lakehouse.orchestration.dags import START_DATE, cli, default_args, settings, table_asset

SETTINGS = settings()
CHANGES = [table_asset(SETTINGS, namespace, c.table)
           for c in load_all().values() for namespace in ("raw", "quarantine")]

with DAG(
    dag_id="dbt_build",
    description="dbt build of staging, intermediate and marts after new batches",
    doc_md=__doc__,
    schedule=AssetAny(*CHANGES),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(SETTINGS, timeout_minutes=60),
    tags=["dbt", "marts"],
) as dag:
    BashOperator(
        task_id="dbt_build",
        bash_command=cli(("marts", "update", "--defer-rest", f"{SETTINGS.dbt_defer_rest_seconds:g}",
                          "--keep-up", f"{SETTINGS.dbt_keep_up_seconds:g}",
                          "--", "--exclude", "resource_type:unit_test")),
        skip_on_exit_code=SKIPPED,
        outlets=[table_asset(SETTINGS, "marts", "fct_observations_hourly")],
    )
