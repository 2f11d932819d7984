"""Daily Iceberg table maintenance, one task per layer: `lakehouse maintain --layer <layer>`.

For every table of the layer:
1. compact small files into larger ones (rows unchanged; each ingested batch and each
   incremental dbt run adds small files);
2. expire snapshots older than LAKEHOUSE_MAINTENANCE_SNAPSHOT_RETENTION (7d), always
   keeping the newest; time travel reaches back that far;
3. remove orphan files (in the table's folder, referenced by no snapshot) older than
   LAKEHOUSE_MAINTENANCE_ORPHAN_RETENTION (7d), a margin that keeps files of writes still
   in flight.

raw, quarantine and audit are maintained with Spark's procedures, staging, intermediate and
marts with Trino's `ALTER TABLE ... EXECUTE`: each layer by the engine allowed to write its
S3 prefix. Tasks run one at a time; a layer that fails does not stop the others.

Then `check_marts`: a mart build whose data tests check every row (`lakehouse marts update
--force --all-rows`). The dbt_build DAG's builds test only the batches since their window;
this covers the rest of the history once a day, after the compactions rewrote it.
"""

from __future__ import annotations

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

from lakehouse.catalog import NAMESPACES
from lakehouse.orchestration.dags import START_DATE, cli, default_args, settings, timetable

SETTINGS = settings()

with DAG(
    dag_id="iceberg_maintenance",
    description="Compact, expire snapshots and remove orphan files in every Iceberg table",
    doc_md=__doc__,
    schedule=timetable(SETTINGS.maintenance_schedule),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    max_active_tasks=1,
    default_args=default_args(SETTINGS, timeout_minutes=120),
    tags=["maintenance", "iceberg"],
) as dag:
    layers = [BashOperator(task_id=f"maintain_{layer}", bash_command=cli("maintain", "--layer", layer),
                           skip_on_exit_code=None) for layer in NAMESPACES]
    check = BashOperator(task_id="check_marts", trigger_rule="all_done",
                         bash_command=cli(("marts", "update", "--force", "--all-rows", "--",
                                           "--exclude", "resource_type:unit_test")))
    layers >> check
