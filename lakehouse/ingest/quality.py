"""The contract's quality gate on one ingested batch.

Scope: pure; compares a batch's quarantine rate with the contract's
`quality.max_quarantine_rate`, and fails on batches that were missed (published and
withdrawn before they were fetched). The scheduler's ingestion DAG calls it after each batch.
"""

from __future__ import annotations

from lakehouse.contracts import Contract
from lakehouse.errors import LakehouseError


class QualityError(LakehouseError):
    """A batch quarantined more of its rows than its contract allows."""


def check_batch(contract: Contract, result: dict) -> str:
    """A one-line verdict for a batch result (as `lakehouse ingest --json` prints it), or
    QualityError naming the batch, its rate and the contract's limit."""
    for key in ("batch_id", "status", "rows_in", "rows_quarantined"):
        if key not in result:
            raise QualityError(f"{contract.id}: the ingestion result has no {key!r}: {result!r}",
                               "is the ingest task's last output line the JSON of `lakehouse ingest --json`?")
    limit = contract.quality.max_quarantine_rate
    rows_in, bad = int(result["rows_in"]), int(result["rows_quarantined"])
    if result["status"] not in ("committed", "replayed") or rows_in == 0:
        return f"{result['batch_id']}: {result['status']}, no rows to rate"
    rate = bad / rows_in
    verdict = (f"{result['batch_id']}: {bad} of {rows_in} rows quarantined ({rate:.1%}); "
               f"the contract allows {limit:.1%}")
    if rate > limit:
        raise QualityError(f"quarantine rate above the contract's limit: {verdict}",
                           f"the rows are kept in quarantine.{contract.table} with their reasons "
                           f"(batch_id = '{result['batch_id']}'); fix the source, or change "
                           f"quality.max_quarantine_rate in contracts/{contract.id}.yaml")
    return verdict


def check_complete(contract: Contract, result: dict) -> str:
    """A one-line verdict on completeness, or QualityError naming each missed batch."""
    missed = list(result.get("missed") or [])
    if missed:
        raise QualityError(f"{contract.id}: {len(missed)} batch(es) missed before {result.get('batch_id')} "
                           f"arrived: {', '.join(missed)}",
                           "they were published and withdrawn before the scheduler fetched them, and are "
                           "recorded in audit.ingestion_log with status 'missed'; poll at least as often as "
                           "the API publishes (LAKEHOUSE_INGEST_SCHEDULE)")
    return f"{result.get('batch_id')}: no batch missed"
