"""Which cycle a batch belongs to. Pure: no Spark, no network, no catalog.

A batch API serves the batches 1..N of a cycle, one at a time, and starts a new cycle with
the same batch numbers after `restart_data_generation`. The batch identity is therefore
(source, group, cycle, batch number), and ingestion decides the cycle before anything is
written, from the batch and what this source and group already committed.

The rule (docs/ingestion.md, "Cycles"); the first step that applies decides:

0. The batch number must be 1..N (N = the contract's `source.batches_per_cycle`);
   otherwise the batch is rejected.
1. Declared: when the API says which cycle it is in (a header or an envelope field, per
   the contract), that is the cycle. The same payload under (cycle, batch) again is a
   replay; another payload under it is a changed payload: rejected and kept, never merged.
2. No batch committed yet: cycle 1.
3. The same payload (canonical checksum) as a committed batch of that number, in any
   cycle, is a replay: a re-poll, a stale response, or an API re-serving identical data.
4. A batch number above the last one committed (L, in the newest cycle C) continues C.
5. Batch L again with another payload: if L = N the API has started over, so it opens
   cycle C+1; if L < N it is a changed payload within C: rejected and kept.
6. A batch number below L opens cycle C+1 (the API was restarted).

Batches of the decided cycle between the last one committed and this one were published
and never fetched: they are reported as missed.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Delivered:
    """A batch this source and group committed: its audit row."""

    cycle: int
    batch_number: int
    batch_id: str
    payload_checksum: str | None  # canonical; None for batches ingested before cycles existed
    checksum: str | None          # sha256 of the raw bytes


@dataclass(frozen=True)
class Decision:
    action: str                   # ingest | replayed | rejected
    cycle: int | None
    cycle_source: str             # declared | inferred
    reason: str = ""
    missed: tuple[int, ...] = ()  # batch numbers of `cycle` published and never fetched
    replay_of: Delivered | None = None
    conflicts: tuple[str, ...] = field(default=())  # batch ids of another payload, same key


def decide(history: list[Delivered], batch_number: int, payload_checksum: str, checksum: str,
           per_cycle: int, declared: int | None = None) -> Decision:
    how = "declared" if declared is not None else "inferred"
    if not 1 <= batch_number <= per_cycle:
        return Decision("rejected", declared, how,
                        f"batch_number {batch_number} is outside the cycle's 1..{per_cycle} "
                        "(contract source.batches_per_cycle)")
    same_number = [d for d in history if d.batch_number == batch_number]

    def same_payload(d: Delivered) -> bool:
        if d.payload_checksum is not None:
            return d.payload_checksum == payload_checksum
        if d.checksum is not None:  # committed before the canonical checksum existed
            return d.checksum == checksum
        # known from its snapshot only: the batch id ends with the checksum's first 16 digits
        return d.batch_id.rsplit("/", 1)[-1] in (payload_checksum[:16], checksum[:16])

    if declared is not None:
        here = [d for d in same_number if d.cycle == declared]
        replay = next((d for d in here if same_payload(d)), None)
        if replay is not None:
            return Decision("replayed", declared, how, replay_of=replay)
        if here:
            return Decision("rejected", declared, how,
                            f"batch {batch_number} of cycle {declared} was already ingested with another "
                            "payload; this payload differs",
                            conflicts=tuple(sorted(d.batch_id for d in here)))
        in_cycle = [d.batch_number for d in history if d.cycle == declared]
        last = max(in_cycle, default=0)
        newest = max((d.cycle for d in history), default=declared)
        note = (f"declared cycle {declared} is below the newest cycle committed ({newest}): "
                "the API went back" if declared < newest else "")
        missed = tuple(range(last + 1, batch_number)) if batch_number > last else ()
        return Decision("ingest", declared, how, note, missed)
    if not history:
        return Decision("ingest", 1, how, "", tuple(range(1, batch_number)))
    replay = next((d for d in same_number if same_payload(d)), None)
    if replay is not None:
        return Decision("replayed", replay.cycle, how, replay_of=replay)
    newest = max(d.cycle for d in history)
    last = max(d.batch_number for d in history if d.cycle == newest)
    if batch_number > last:
        return Decision("ingest", newest, how, "", tuple(range(last + 1, batch_number)))
    if batch_number == last and last < per_cycle:
        conflicts = tuple(sorted(d.batch_id for d in same_number if d.cycle == newest))
        return Decision("rejected", newest, how,
                        f"batch {batch_number} of cycle {newest} was already ingested with another "
                        "payload; this payload differs", conflicts=conflicts)
    why = (f"batch {batch_number} again with a new payload after the cycle's last batch"
           if batch_number == last else f"batch {batch_number} after batch {last}")
    return Decision("ingest", newest + 1, how, f"{why}: the API started cycle {newest + 1}",
                    tuple(range(1, batch_number)))


def batch_key(source: str, group: int, cycle: int | None, batch_number: int | None) -> str:
    """`<source>/g<group>/b<batch>` for cycle 1 (the key batches had before cycles existed,
    so their identity is unchanged), `<source>/g<group>/c<cycle>/b<batch>` after."""
    b = batch_number if batch_number is not None else "unparsed"
    if cycle is None or cycle == 1:
        return f"{source}/g{group}/b{b}"
    return f"{source}/g{group}/c{cycle}/b{b}"
