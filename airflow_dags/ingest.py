"""Ingestion: one DAG per data contract, `ingest_<source>`, generated from contracts/*.yaml.

Each run covers one data interval [start, end) of the ingestion schedule
(LAKEHOUSE_INGEST_SCHEDULE, every 5 minutes by default) and starts when the interval ends.

**Interval -> batch.** The batch API serves only its newest batch (platform.md, section 4),
so the run for [start, end) ingests the batch the API publishes when the run executes,
at or just after `end`. The schedule should equal the API's publication period. If the
batch served then was already ingested (the API publishes later in the interval than the
scheduler's clock ticks), the run keeps polling for up to 80% of the interval
(`lakehouse ingest --follow`, about 15 polls an interval) and ingests the next batch as soon
as it is published. So each run catches one publication within a poll, whatever the phase
between the two clocks, and ends (starting dbt) right after it commits.

**Idempotent.** Ingestion is exactly-once per batch (source, group, batch number and
payload checksum). Rerunning an interval while the API still serves its batch writes
nothing and says `replayed`; once the API has moved on, a rerun ingests the newest batch,
which its own interval's run then finds already ingested. No row is ever written twice.

**Catchup is off.** A past interval can't be fetched again, so catchup would only repeat
the newest batch. A batch published and withdrawn while the scheduler was down (or
between two runs) is lost to the scheduler: the next run records it in
audit.ingestion_log as `missed` and fails its quality gate, naming it.

Tasks:
- `ingest`: `lakehouse ingest --source <id> --json`. Network errors and HTTP 5xx are retried
  inside the command (backoff, 4 attempts), then by Airflow (LAKEHOUSE_INGEST_RETRIES,
  exponential backoff from LAKEHOUSE_INGEST_RETRY_DELAY_SECONDS). A failed or rejected batch
  is logged with its batch id in this task's log and in audit.ingestion_log.
- `publish`: tells Airflow the raw and quarantine tables changed (assets), which triggers
  `dbt_build`; skipped when the batch was already ingested, or is held.
- `quality_gate`: fails the run when the contract's quality gate held the batch (its
  quarantine rate above the contract's `maxQuarantineRate`, or a batch-level rule broken:
  the valid rows stay staged, out of raw, until `lakehouse batches release|reject`), or
  when batches were missed (published and withdrawn before a run fetched them; each is in
  audit.ingestion_log as `missed`), at once (AirflowFailException: a retry can't change it).

One bad batch never blocks the next: `depends_on_past` is off, every run is bounded by
its retries and `execution_timeout`, and failed runs never pause the DAG.
"""

from __future__ import annotations

import json

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, task

from lakehouse.contracts import load_all
from lakehouse.ingest import probe
from lakehouse.orchestration.dags import START_DATE, cli, default_args, settings, table_asset, timetable
from lakehouse.orchestration.schedule import follow_window

SETTINGS = settings()
FOLLOW, POLL = follow_window(SETTINGS.ingest_schedule)


def ingestion_dag(contract) -> DAG:
    raw = table_asset(SETTINGS, "raw", contract.table)
    quarantine = table_asset(SETTINGS, "quarantine", contract.table)
    # A source the platform does not run waits, paused, until its endpoint has answered a
    # health probe (`lakehouse sources probe`; the probes' state is a local file).
    waiting = probe.waiting(SETTINGS, contract)
    with DAG(
        dag_id=f"ingest_{contract.id}",
        description=f"Ingest {contract.title} ({contract.id}) into raw.{contract.table}"
                    + (f"; {waiting}" if waiting else ""),
        doc_md=f"## {contract.title}\n\nContract: `contracts/{contract.id}.yaml` (version {contract.version}), "
               f"owner {contract.owner}. Quarantine limit {contract.quality.max_quarantine_rate:.0%}.\n\n"
               + (f"**Created {waiting}.**\n\n" if waiting else "") + __doc__,
        is_paused_upon_creation=True if waiting else None,
        schedule=timetable(SETTINGS.ingest_schedule),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=default_args(SETTINGS, owner=contract.owner),
        tags=["ingestion", "raw", contract.id],
    ) as dag:
        ingest = BashOperator(
            task_id="ingest",
            bash_command=cli("ingest", "--source", contract.id, "--json", "--on-missed", "report", "--on-held", "report",
                             "--follow", str(FOLLOW), "--poll", str(POLL)),
            skip_on_exit_code=None,  # exit 99 is a failure like any other, not a skip
        )

        @task(task_id="publish", outlets=[raw, quarantine])
        def publish(result: str) -> str:
            from airflow.sdk.exceptions import AirflowSkipException

            batch = json.loads(result)
            if batch["status"] == "replayed":
                raise AirflowSkipException(f"{batch['batch_id']} was already ingested: nothing new")
            if batch["status"] == "held":
                raise AirflowSkipException(f"{batch['batch_id']} is held by the quality gate: raw is unchanged")
            return batch["batch_id"]

        @task(task_id="quality_gate")
        def quality_gate(result: str, contract_id: str = contract.id) -> str:
            from airflow.sdk.exceptions import AirflowFailException

            from lakehouse.contracts import load_all as contracts
            from lakehouse.ingest.quality import QualityError, check_batch, check_complete

            contract, batch = contracts()[contract_id], json.loads(result)
            try:
                verdict = check_batch(contract, batch)
                print(check_complete(contract, batch))
            except QualityError as exc:
                raise AirflowFailException(str(exc)) from exc
            print(verdict)
            return verdict

        publish(ingest.output)
        quality_gate(ingest.output)
    return dag


for _contract in load_all().values():
    globals()[f"ingest_{_contract.id}"] = ingestion_dag(_contract)
