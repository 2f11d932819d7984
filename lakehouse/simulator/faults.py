"""Faults the simulator injects: into single rows of a batch, and into whole responses.

Scope: pure functions and constants; the server arms whole-response faults (app.py), the
generator calls `plan_row_faults` and `apply_row_fault` (generator.py).

Row faults (platform.md section 4). Each faulty row carries exactly one kind, and the batch's
manifest (`Batch.faults`) names it. Ingestion must send the first five to quarantine; the
other four are valid rows that later layers deal with:

| kind            | what the row looks like                                   | outcome    |
|-----------------|-----------------------------------------------------------|------------|
| malformed       | object rows: a bare string or number; array rows: too few | quarantine |
|                 | elements                                                  |            |
| out_of_range    | one metric below its contract minimum or above its maximum| quarantine |
| null_required   | the station id or the event time is null                  | quarantine |
| drift_renamed   | object rows: a field renamed (pm25 -> pm2_5_ugm3);        | quarantine |
|                 | array rows: an extra trailing element                     |            |
| drift_type      | a string where a number belongs ("12.4", "n/a")           | quarantine |
| duplicate       | an exact copy of an earlier row of the same batch         | valid      |
| late            | event time 1-48 h before the batch's window               | valid      |
| out_of_order    | event time earlier than rows before it, inside the window | valid      |
| unknown_station | a code that matches the pattern but is not in the registry| valid      |

Whole-response faults (`BATCH_FAULT_KINDS`) are armed through `POST /_control/faults`; they
are for ingestion's error handling and never happen unless armed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lakehouse.simulator.generator import NetworkSpec, _Layout

QUARANTINE_KINDS = frozenset({"malformed", "out_of_range", "null_required", "drift_renamed",
                              "drift_type"})
VALID_KINDS = frozenset({"duplicate", "late", "out_of_order", "unknown_station"})
ROW_FAULT_KINDS = ("malformed", "out_of_range", "null_required", "drift_renamed", "drift_type",
                   "duplicate", "late", "out_of_order", "unknown_station")

BATCH_FAULT_KINDS = ("http_500", "timeout", "invalid_json", "wrong_shape", "empty_data",
                     "truncated")
BATCH_FAULT_HELP = {
    "http_500": "answer 500 with a JSON error",
    "timeout": "sleep delay_seconds (default 30) before answering normally",
    "invalid_json": "200 with a body that is not JSON (cut off after `\"batch_number\"`)",
    "wrong_shape": "200 with valid JSON of the wrong shape: a top-level list on the 1st, "
                   "3rd, ... faulty response, an object without `data` on the 2nd, 4th, ...",
    "empty_data": "200 with `\"data\": []`",
    "truncated": "Content-Length of the whole body, half the body sent, connection closed",
}

# A renamed field per network (drift_renamed on object rows). None is a contract name.
RENAMES = {
    "network-a": {"pm25": "pm2_5_ugm3", "relative_humidity": "rh_pct",
                  "temperature": "temp_c", "no2": "no2_ppb"},
    "network-b": {"pm2_5": "pm25", "humidity": "rel_humidity", "temp_f": "temperature_f",
                  "battery_v": "battery"},
}
_BAD_STRINGS = ("n/a", "ERR", "---")
# Late rows fall in [day 06:00 - 39 h, day 06:00 - 1 h]: 1-48 h before every batch window
# of the day (06:00-16:00) and clear of the cycles 3 days before and after.
_LATE_SPAN_S = 38 * 3600
_LATE_STRIDE = 7919  # prime, coprime with _LATE_SPAN_S: distinct rows get distinct seconds
_DUPLICATE_LOOKBACK = 64
_OUT_OF_ORDER_LOOKBACK_MS = 30 * 60 * 1000


def plan_row_faults(rng: random.Random, rows: int, fault_rate: float) -> dict[int, str]:
    """Which rows get which fault: round(rows * fault_rate) rows, kinds in equal shares."""
    count = round(rows * fault_rate)
    if count <= 0:
        return {}
    positions = rng.sample(range(rows), count)
    kinds = [ROW_FAULT_KINDS[j % len(ROW_FAULT_KINDS)] for j in range(count)]
    rng.shuffle(kinds)
    return dict(zip(positions, kinds))


def apply_row_fault(kind: str, row: Any, i: int, *, spec: NetworkSpec, layout: _Layout,
                    as_object: bool, rng: random.Random, plan: dict[int, str],
                    clean_row: Callable[[int], Any]) -> tuple[Any, str]:
    """Row `i` with fault `kind` injected, and the kind actually injected.

    `duplicate` needs a clean row among the 64 before, `out_of_order` a slot at least two
    slots into the window; where that is missing the row becomes `late` instead.
    """
    names = spec.field_names
    if kind == "duplicate":
        for j in range(i - 1, max(-1, i - 1 - _DUPLICATE_LOOKBACK), -1):
            if j not in plan:
                src = clean_row(j)
                if src is not None:
                    return (dict(src) if as_object else list(src)), kind
        kind = "late"
    if kind == "out_of_order":
        t = _earlier_in_window(i, layout, rng)
        if t is not None:
            return _set(row, names, spec.time_field, layout.fmt_time(t), as_object), kind
        kind = "late"
    if kind == "late":
        off_s = ((layout.batch_number - 1) * layout.rows + i) * _LATE_STRIDE % _LATE_SPAN_S
        t = layout.day_start_ms - 3_600_000 - off_s * 1000
        if layout.unit_ms == 1:
            t -= rng.randrange(1000)
        return _set(row, names, spec.time_field, layout.fmt_time(t), as_object), kind
    if kind == "unknown_station":
        code = spec.unknown_codes[i % layout.n]
        return _set(row, names, spec.id_field, code, as_object), kind
    if kind == "null_required":
        return _set(row, names, rng.choice(spec.required), None, as_object), kind
    if kind == "out_of_range":
        f = rng.choice([f for f in spec.metrics
                        if f.minimum is not None and f.maximum is not None])
        span = f.maximum - f.minimum
        unit = 10.0 ** -f.decimals
        below = rng.random() < 0.5
        # a little below the floor (pm25 -1 to -50), or up to half a span above the ceiling
        v = (f.minimum - span * rng.uniform(0.001, 0.05) if below
             else f.maximum + span * rng.uniform(0.005, 0.5))
        v = round(v, f.decimals)
        while f.minimum <= v <= f.maximum:
            v = round(v - unit if below else v + unit, f.decimals)
        return _set(row, names, f.name, v, as_object), kind
    if kind == "drift_type":
        f = rng.choice(spec.metrics)
        value = _get(row, names, f.name, as_object)
        bad = str(value) if rng.random() < 0.5 else rng.choice(_BAD_STRINGS)
        return _set(row, names, f.name, bad, as_object), kind
    if kind == "drift_renamed":
        if as_object:
            old, new = rng.choice(sorted(RENAMES[spec.name].items()))
            return {(new if k == old else k): v for k, v in row.items()}, kind
        return [*row, round(rng.uniform(0.1, 3.0), 2)], kind  # a field the contract lacks
    if kind == "malformed":
        if as_object:
            if rng.random() < 0.5:
                return ";".join("" if v is None else str(v) for v in row.values()), kind
            return _get(row, names, spec.metrics[0].name, as_object), kind
        return row[: rng.randint(1, len(row) - 1)], kind
    raise ValueError(f"unknown row fault kind {kind!r}; expected one of {ROW_FAULT_KINDS}")


def _earlier_in_window(i: int, layout: _Layout, rng: random.Random) -> int | None:
    """An event time (ms) strictly between two slots at least two slots before row i's.

    Earlier than every regular row of the slot before, so the times stop ascending; between
    grid points, so no station's (code, time) key is taken; inside the window, so not late.
    """
    m = i // layout.n
    if m < 2:
        return None
    back = max(1, int(_OUT_OF_ORDER_LOOKBACK_MS / layout.step_ms))
    mp = m - 2 - rng.randrange(min(m - 1, back))
    lo, hi = layout.slot_ms(mp), layout.slot_ms(mp + 1)
    gap = (hi - lo) // layout.unit_ms - 1
    if gap < 1:
        return None
    return lo + layout.unit_ms * (1 + rng.randrange(gap))


def _get(row: Any, names: tuple[str, ...], name: str, as_object: bool) -> Any:
    return row[name] if as_object else row[names.index(name)]


def _set(row: Any, names: tuple[str, ...], name: str, value: Any, as_object: bool) -> Any:
    if as_object:
        row[name] = value
    else:
        row[names.index(name)] = value
    return row
