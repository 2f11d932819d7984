"""The contract's quality gate on one batch.

Scope: pure.
- `gate`: before a batch's valid rows are published, its quarantine rate against the
  contract's `maxQuarantineRate`, and the contract's batch-level rules (`BatchRule`) on its
  valid rows. A batch that fails stays on its audit branch, held, until a person releases
  or rejects it (`lakehouse batches`).
- `check_batch`, `check_complete`: the scheduler's verdict on an ingest result: a held
  batch, or batches that were missed (published and withdrawn before they were fetched),
  fail the run.
"""

from __future__ import annotations

from lakehouse.contracts import Contract
from lakehouse.errors import LakehouseError


class QualityError(LakehouseError):
    """A batch quarantined more of its rows than its contract allows."""


def measure(rule, table) -> float:
    """The rule's metric on a batch's valid rows (an Arrow table)."""
    import pyarrow.compute as pc

    n = table.num_rows
    if rule.metric == "rowCount":
        return n
    if rule.metric == "nullValues":
        count = table[rule.fields[0]].null_count
    else:  # duplicateValues: rows whose values (all non-null) another row of the batch has too
        keep = None
        for name in rule.fields:
            valid = pc.is_valid(table[name])
            keep = valid if keep is None else pc.and_(keep, valid)
        rows = table.select(rule.fields).filter(keep)
        count = rows.num_rows - rows.group_by(rule.fields).aggregate([]).num_rows
    return round(100 * count / n, 4) if rule.unit == "percent" and n else (0.0 if rule.unit == "percent" else count)


def gate(contract: Contract, rows_in: int, rows_quarantined: int, table) -> dict:
    """The gate's verdict on a batch: `held` (bool), `reasons` (why it is held), and each
    check's outcome, kept in audit.ingestion_log.gate_results."""
    limit = contract.quality.max_quarantine_rate
    rate = rows_quarantined / rows_in if rows_in else 0.0
    reasons = []
    if rate > limit:
        reasons.append(f"quarantine rate {rate:.1%} ({rows_quarantined} of {rows_in} rows) is above the "
                       f"contract's maxQuarantineRate {limit:.1%}")
    checks = []
    for rule in contract.rules:
        value = measure(rule, table)
        ok = rule.holds(value)
        checks.append({"rule": rule.name, "check": rule.text(), "measured": value, "holds": ok})
        if not ok:
            reasons.append(f"{rule.name}: {rule.text()} does not hold (measured {value:g})")
    return {"held": bool(reasons), "reasons": reasons, "quarantine_rate": round(rate, 6), "limit": limit,
            "rules": checks}


def check_batch(contract: Contract, result: dict) -> str:
    """A one-line verdict for a batch result (as `lakehouse ingest --json` prints it), or
    QualityError naming the batch, its rate and the contract's limit."""
    for key in ("batch_id", "status", "rows_in", "rows_quarantined"):
        if key not in result:
            raise QualityError(f"{contract.id}: the ingestion result has no {key!r}: {result!r}",
                               "is the ingest task's last output line the JSON of `lakehouse ingest --json`?")
    if result["status"] == "held":
        raise QualityError(f"{result['batch_id']}: {result.get('message') or 'held by the quality gate'}",
                           "its valid rows stay out of raw (and the marts) until a person decides: "
                           f"`lakehouse batches release {result['batch_id']}` or `lakehouse batches reject "
                           f"{result['batch_id']}`; its quarantined rows are in quarantine.{contract.table}")
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
                           f"maxQuarantineRate in contracts/{contract.id}.yaml")
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
