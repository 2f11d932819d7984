"""Deterministic readings of the two station networks, one batch at a time.

Scope: pure functions. Reads the station registry (dbt_project/seeds/station_registry.csv) and the two data contracts (field order, required
fields, ranges); no clock, no network, no global random state. The same (seed, network,
group, cycle, batch, rows, fault rate, row format) always gives byte-identical data.

Time layout: cycle `c` of group `g` covers one local day, 2026-01-01 + (3c + g) days
(America/Mexico_City). Batch `k` covers the hour [06:00 + (k-1) h, 06:00 + k h). Rows are
laid out slot by slot: row `i` is station `i % n_stations` at slot `i // n_stations`, and
the slots are spread evenly over the hour, so event times ascend with the row index and
(station, event time) is unique while a station gets at most one reading per second
(network A: up to 3,600 x 12 = 43,200 rows a batch; network B has millisecond times).
Three days between a group's cycles leave room for late rows (1-48 h before the window)
that never collide with another cycle's readings.
"""

from __future__ import annotations

import csv
import hashlib
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from lakehouse import contracts
from lakehouse.contracts import CONTRACTS_DIR, Contract
from lakehouse.errors import LakehouseError
from lakehouse.settings import REPO_ROOT
from lakehouse.simulator.faults import (
    QUARANTINE_KINDS,
    ROW_FAULT_KINDS,
    apply_row_fault,
    plan_row_faults,
)

try:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    LOCAL_TZ = ZoneInfo("America/Mexico_City")
except ZoneInfoNotFoundError:  # no tz database on this host (no tzdata package either)
    # Mexico abolished daylight saving time in 2022, so every simulated day is UTC-6.
    LOCAL_TZ = timezone(timedelta(hours=-6), "CST")

NETWORKS = ("network-a", "network-b")
BATCHES_PER_CYCLE = 10
FIRST_DAY = date(2026, 1, 1)
# Days are 3 * cycle + group after FIRST_DAY, folded so network B's `ts` stays below the
# contract maximum (2100-01-01) for any group and cycle.
DAY_WRAP = 9000
WINDOW_START = time(6, 0)
# The station registry is the dbt seed: one file for the simulator and the marts.
STATIONS_CSV = REPO_ROOT / "dbt_project" / "seeds" / "station_registry.csv"
DEFAULT_ROW_FORMAT: Mapping[str, str] = {"network-a": "object", "network-b": "array"}
ROW_FORMATS = ("object", "array")
# Rows are generated and serialized this many at a time, so a 1M-row batch never holds
# its whole payload twice. The output does not depend on it.
CHUNK_ROWS = 50_000

# What each network's value model emits, in order. Checked against the contract at load,
# so a contract change fails loudly here instead of producing rows the contract rejects.
_MODEL_FIELDS = {
    "network-a": ("station_code", "timestamp", "pm25", "pm10", "o3", "no2", "temperature",
                  "relative_humidity"),
    "network-b": ("device_id", "ts", "pm2_5", "ozone", "temp_f", "humidity", "battery_v"),
}
# Decimals each metric is rounded to (what the instruments report).
_DECIMALS = {
    "pm25": 1, "pm10": 1, "o3": 1, "no2": 1, "temperature": 1, "relative_humidity": 1,
    "pm2_5": 1, "ozone": 3, "temp_f": 1, "humidity": 2, "battery_v": 2,
}
# Mean January daytime temperature (C) per state; other states get the default.
_STATE_TEMP_C = {"09": 13.0, "15": 11.0, "14": 16.0, "19": 15.0}
_DEFAULT_TEMP_C = 14.0
# Codes that match each network's pattern but are deliberately absent from the registry.
_UNKNOWN_PREFIXES = ("PUE", "QRO", "HGO", "MOR", "TLX", "GTO")


class SimulatorConfigError(LakehouseError, ValueError):
    """A generator input (network, row format, station registry, contract) is unusable."""


@dataclass(frozen=True)
class Station:
    network: str
    source_code: str
    station_id: str
    state_code: str
    state_name: str
    municipality_code: str
    municipality_name: str


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str
    required: bool
    minimum: float | None
    maximum: float | None
    pattern: str | None
    decimals: int


@dataclass(frozen=True)
class NetworkSpec:
    """One network as the generator sees it: contract fields plus its stations."""

    name: str
    contract_id: str
    path: str
    fields: tuple[FieldSpec, ...]
    id_field: str
    time_field: str
    stations: tuple[Station, ...]
    unknown_codes: tuple[str, ...]

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def metrics(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.name not in (self.id_field, self.time_field))

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required)


@dataclass
class Batch:
    """One batch: its rows, and for each row the fault injected into it (or None).

    `faults[i]` is one of `ROW_FAULT_KINDS` or None. Rows whose kind is in
    `QUARANTINE_KINDS` break the contract; every other row satisfies it.
    """

    network: str
    group_number: int
    cycle: int
    batch_number: int
    window_start: datetime  # UTC, inclusive
    window_end: datetime  # UTC, exclusive
    data: list[Any]
    faults: list[str | None]

    def indices(self, kind: str | None) -> list[int]:
        return [i for i, k in enumerate(self.faults) if k == kind]

    @property
    def quarantine_indices(self) -> list[int]:
        return [i for i, k in enumerate(self.faults) if k in QUARANTINE_KINDS]

    def envelope(self) -> dict[str, Any]:
        return {"group_number": self.group_number, "batch_number": self.batch_number,
                "data": self.data}


# ---- registry and contracts --------------------------------------------------------------
@lru_cache(maxsize=None)
def load_stations(path: Path = STATIONS_CSV) -> tuple[Station, ...]:
    """Every station of both networks, in file order (the order rows cycle through)."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        expected = [f for f in Station.__dataclass_fields__]
        if reader.fieldnames != expected:
            raise SimulatorConfigError(
                f"{path}: columns are {reader.fieldnames}, expected {expected}")
        stations = tuple(Station(**row) for row in reader)
    for st in stations:
        if st.network not in NETWORKS:
            raise SimulatorConfigError(f"{path}: unknown network {st.network!r} for "
                                       f"{st.source_code}; expected one of {NETWORKS}")
    return stations


@lru_cache(maxsize=None)
def load_contract(network: str) -> Contract:
    """The validated data contract of `network` (contracts/network_a.yaml for network-a)."""
    _check_network(network)
    return contracts.load_contract(CONTRACTS_DIR / f"{network.replace('-', '_')}.yaml")


@lru_cache(maxsize=None)
def network_spec(network: str) -> NetworkSpec:
    contract = load_contract(network)
    fields = tuple(
        FieldSpec(name=f.name, type=f.type, required=f.required, minimum=f.minimum,
                  maximum=f.maximum, pattern=f.pattern, decimals=_DECIMALS.get(f.name, 0))
        for f in contract.fields)
    names = tuple(f.name for f in fields)
    if names != _MODEL_FIELDS[network]:
        raise SimulatorConfigError(
            f"contract {contract.id} lists fields {names}, but the simulator's value model "
            f"emits {_MODEL_FIELDS[network]}",
            "update lakehouse/simulator/generator.py to the contract")
    id_field = contract.natural_key[0]
    time_field = contract.event_time.field
    stations = tuple(s for s in load_stations() if s.network == network)
    if not stations:
        raise SimulatorConfigError(f"{STATIONS_CSV} lists no station of {network}")
    known = {s.source_code for s in stations}
    if network == "network-a":
        unknown = tuple(f"{_UNKNOWN_PREFIXES[i % len(_UNKNOWN_PREFIXES)]}-{100 + i:03d}"
                        for i in range(len(stations)))
    else:
        unknown = tuple(f"iot-{0xf00000 + i * 0x010101:06x}" for i in range(len(stations)))
    if known & set(unknown):
        raise SimulatorConfigError(f"{STATIONS_CSV} lists a code reserved for unknown "
                                   f"stations: {sorted(known & set(unknown))}")
    return NetworkSpec(name=network, contract_id=contract.id, path=contract.source.path,
                       fields=fields, id_field=id_field, time_field=time_field,
                       stations=stations, unknown_codes=unknown)


def _check_network(network: str) -> None:
    if network not in NETWORKS:
        raise SimulatorConfigError(f"unknown network {network!r}; expected one of {NETWORKS}")


# ---- time --------------------------------------------------------------------------------
def stable_seed(*parts: object) -> int:
    """A 64-bit seed from `parts`, the same in every process (unlike the salted `hash()`)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def cycle_day(group_number: int, cycle: int) -> date:
    """The local day a group's cycle covers."""
    return FIRST_DAY + timedelta(days=(3 * cycle + group_number) % DAY_WRAP)


def batch_window(group_number: int, cycle: int, batch_number: int) -> tuple[datetime, datetime]:
    """[start, end) of the event times of a batch's regular rows, as UTC datetimes."""
    if not 1 <= batch_number <= BATCHES_PER_CYCLE:
        raise SimulatorConfigError(f"batch_number {batch_number} outside 1..{BATCHES_PER_CYCLE}")
    day_start = datetime.combine(cycle_day(group_number, cycle), WINDOW_START, LOCAL_TZ)
    start = day_start.astimezone(timezone.utc) + timedelta(hours=batch_number - 1)
    return start, start + timedelta(hours=1)


def _ms(dt: datetime) -> int:
    return int(dt.timestamp()) * 1000


def local_iso(epoch_ms: int) -> str:
    """Network A's timestamp: local time with its UTC offset, to the second."""
    dt = datetime.fromtimestamp(epoch_ms // 1000, timezone.utc).astimezone(LOCAL_TZ)
    return dt.isoformat(timespec="seconds")


# ---- the value model ---------------------------------------------------------------------
@dataclass(frozen=True)
class _Site:
    """The day's air at one canonical station (shared by co-located stations of A and B)."""

    temp_c: float
    rh: float
    pm25: float
    pm10_ratio: float
    o3_peak: float
    no2: float


def _sites(seed: int, group_number: int, cycle: int) -> dict[str, _Site]:
    rng = random.Random(stable_seed(seed, "climate", group_number, cycle))
    sites = {}
    for st in sorted({s.station_id: s for s in load_stations()}.values(),
                     key=lambda s: s.station_id):
        sites[st.station_id] = _Site(
            temp_c=_STATE_TEMP_C.get(st.state_code, _DEFAULT_TEMP_C) + rng.uniform(-2, 2),
            rh=rng.uniform(55, 75),
            pm25=rng.uniform(12, 40),
            pm10_ratio=rng.uniform(1.6, 2.2),
            o3_peak=rng.uniform(40, 90),
            no2=rng.uniform(15, 40),
        )
    return sites


def _diurnal(hour: float) -> tuple[float, float, float, float]:
    """(temperature offset C, particulate factor, ozone factor 0-1, NO2 factor) at `hour`."""
    temp = 7.0 * math.sin(math.pi * (hour - 9.0) / 12.0)  # coolest at dawn, warmest ~15:00
    pm = 1.0 + 0.6 * math.exp(-((hour - 8.5) / 1.8) ** 2)  # morning traffic
    o3 = max(0.0, math.sin(math.pi * (hour - 8.0) / 10.0)) ** 1.5  # photochemical, ~13:00
    no2 = 0.6 + 0.8 * math.exp(-((hour - 8.0) / 1.5) ** 2)
    return temp, pm, o3, no2


class _Layout:
    """Where each row sits: slot times and the event time of row i."""

    def __init__(self, spec: NetworkSpec, group_number: int, cycle: int, batch_number: int,
                 rows: int):
        self.n = len(spec.stations)
        self.rows = rows
        self.batch_number = batch_number
        self.slots = max(1, -(-rows // self.n))
        self.start, self.end = batch_window(group_number, cycle, batch_number)
        self.start_ms = _ms(self.start)
        self.step_ms = 3_600_000 / self.slots
        # resolution of the network's event time: seconds for A's ISO string, ms for B
        self.unit_ms = 1000 if spec.time_field == "timestamp" else 1
        self.fmt_time = local_iso if self.unit_ms == 1000 else int
        self.first_hour = WINDOW_START.hour + batch_number - 1
        day_start = datetime.combine(cycle_day(group_number, cycle), WINDOW_START, LOCAL_TZ)
        self.day_start_ms = _ms(day_start)

    def slot_ms(self, m: int) -> int:
        """Event time of slot m, epoch ms, floored to the network's resolution."""
        off = int(m * self.step_ms)
        return self.start_ms + off - off % self.unit_ms

    def hour(self, m: int) -> float:
        return self.first_hour + m * self.step_ms / 3_600_000


def _clean_rows(spec: NetworkSpec, layout: _Layout, sites: dict[str, _Site],
                batteries: list[float], rng: random.Random, a: int, b: int,
                as_object: bool) -> list[Any]:
    """Rows a..b-1 before faults. Consumes `rng` in row order, so chunking is invisible."""
    r = rng.random
    n = layout.n
    out: list[Any] = []
    ap = out.append
    codes = [s.source_code for s in spec.stations]
    site = [sites[s.station_id] for s in spec.stations]
    is_a = spec.name == "network-a"
    i = a
    while i < b:
        m, s0 = divmod(i, n)
        s1 = min(n, s0 + (b - i))
        t_ms = layout.slot_ms(m)
        hour = layout.hour(m)
        f_t, f_pm, f_o3, f_no2 = _diurnal(hour)
        # int(x * 10 + 0.5) / 10 rounds like round(x, 1) for the positive values the model
        # yields, at a third of the cost (it matters at 1M rows).
        if is_a:
            ts = local_iso(t_ms)
            for s in range(s0, s1):
                c = site[s]
                pm = c.pm25 * f_pm + (r() - 0.5) * 6.0
                temp = c.temp_c + f_t + (r() - 0.5) * 1.6
                v = (int(pm * 10.0 + 0.5) / 10.0,
                     int((pm * c.pm10_ratio + (r() - 0.5) * 8.0) * 10.0 + 0.5) / 10.0,
                     int((6.0 + c.o3_peak * f_o3 + r() * 5.0) * 10.0 + 0.5) / 10.0,
                     int((c.no2 * f_no2 + (r() - 0.5) * 6.0) * 10.0 + 0.5) / 10.0,
                     int(temp * 10.0 + 0.5) / 10.0,
                     int((c.rh - 2.5 * (temp - c.temp_c) + (r() - 0.5) * 5.0) * 10.0 + 0.5) / 10.0)
                if as_object:
                    ap({"station_code": codes[s], "timestamp": ts, "pm25": v[0], "pm10": v[1],
                        "o3": v[2], "no2": v[3], "temperature": v[4],
                        "relative_humidity": v[5]})
                else:
                    ap([codes[s], ts, *v])
        else:
            drop = 0.015 * (hour - WINDOW_START.hour)  # batteries drain through the day
            for s in range(s0, s1):
                c = site[s]
                v = (int((c.pm25 * f_pm * 1.12 + (r() - 0.5) * 8.0) * 10.0 + 0.5) / 10.0,
                     int(((6.0 + c.o3_peak * f_o3) + (r() - 0.5) * 6.0) + 0.5) / 1000.0,
                     int(((c.temp_c + f_t) * 18.0 + 320.0 + (r() - 0.5) * 30.0) + 0.5) / 10.0,
                     int((c.rh - 2.5 * f_t + (r() - 0.5) * 6.0) + 0.5) / 100.0,
                     int((batteries[s] - drop + (r() - 0.5) * 0.02) * 100.0 + 0.5) / 100.0)
                if as_object:
                    ap({"device_id": codes[s], "ts": t_ms, "pm2_5": v[0], "ozone": v[1],
                        "temp_f": v[2], "humidity": v[3], "battery_v": v[4]})
                else:
                    ap([codes[s], t_ms, *v])
        i += s1 - s0
    return out


# ---- batches -----------------------------------------------------------------------------
def _check_inputs(network: str, group_number: int, cycle: int, batch_number: int, rows: int,
                  fault_rate: float, row_format: Mapping[str, str] | None) -> str:
    _check_network(network)
    if group_number < 0 or cycle < 0:
        raise SimulatorConfigError(f"group_number {group_number} and cycle {cycle} must be >= 0")
    if not 1 <= batch_number <= BATCHES_PER_CYCLE:
        raise SimulatorConfigError(f"batch_number {batch_number} outside 1..{BATCHES_PER_CYCLE}")
    if rows < 0:
        raise SimulatorConfigError(f"rows {rows} must be >= 0")
    if not 0 <= fault_rate <= 1:
        raise SimulatorConfigError(f"fault_rate {fault_rate} must be within 0..1")
    fmt = (row_format or DEFAULT_ROW_FORMAT).get(network, DEFAULT_ROW_FORMAT[network])
    if fmt not in ROW_FORMATS:
        raise SimulatorConfigError(f"row format {fmt!r} for {network}; expected one of "
                                   f"{ROW_FORMATS}")
    return fmt


def iter_batch_chunks(network: str, group_number: int, cycle: int, batch_number: int, *,
                      seed: int, rows: int, fault_rate: float,
                      row_format: Mapping[str, str] | None = None,
                      chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[list[Any], list[str | None]]]:
    """The batch's rows and fault kinds, `chunk_rows` at a time, in row order."""
    fmt = _check_inputs(network, group_number, cycle, batch_number, rows, fault_rate, row_format)
    spec = network_spec(network)
    layout = _Layout(spec, group_number, cycle, batch_number, rows)
    sites = _sites(seed, group_number, cycle)
    brng = random.Random(stable_seed(seed, "battery", network, group_number, cycle))
    batteries = [brng.uniform(3.75, 4.15) for _ in spec.stations]
    # Values and faults draw from separate streams, so where chunks end changes nothing.
    rng = random.Random(stable_seed(seed, network, group_number, cycle, batch_number))
    frng = random.Random(stable_seed(seed, network, group_number, cycle, batch_number, "faults"))
    plan = plan_row_faults(frng, rows, fault_rate)
    positions = sorted(plan)
    p = 0
    tail: list[Any] = []  # the previous chunk's last rows, which duplicates may copy
    tail_start = 0
    as_object = fmt == "object"
    for a in range(0, rows, max(1, chunk_rows)):
        b = min(rows, a + max(1, chunk_rows))
        chunk = _clean_rows(spec, layout, sites, batteries, rng, a, b, as_object)
        kinds: list[str | None] = [None] * (b - a)

        def clean_row(j: int, _a=a, _chunk=chunk) -> Any:
            if j >= _a:
                return _chunk[j - _a]
            if j >= tail_start:
                return tail[j - tail_start]
            return None

        while p < len(positions) and positions[p] < b:
            i = positions[p]
            row, kind = apply_row_fault(plan[i], chunk[i - a], i, spec=spec, layout=layout,
                                        as_object=as_object, rng=frng, plan=plan,
                                        clean_row=clean_row)
            chunk[i - a] = row
            kinds[i - a] = kind
            plan[i] = kind
            p += 1
        yield chunk, kinds
        keep = chunk[-64:]
        tail, tail_start = keep, b - len(keep)


def generate_batch(network: str, group_number: int, cycle: int, batch_number: int, *,
                   seed: int, rows: int, fault_rate: float,
                   row_format: Mapping[str, str] | None = None) -> Batch:
    """One whole batch with its fault manifest (what the server serves as `data`)."""
    data: list[Any] = []
    faults: list[str | None] = []
    for chunk, kinds in iter_batch_chunks(network, group_number, cycle, batch_number, seed=seed,
                                          rows=rows, fault_rate=fault_rate,
                                          row_format=row_format):
        data.extend(chunk)
        faults.extend(kinds)
    start, end = batch_window(group_number, cycle, batch_number)
    return Batch(network=network, group_number=group_number, cycle=cycle,
                 batch_number=batch_number, window_start=start, window_end=end, data=data,
                 faults=faults)


def render_batch(network: str, group_number: int, cycle: int, batch_number: int, *,
                 seed: int, rows: int, fault_rate: float,
                 row_format: Mapping[str, str] | None = None) -> bytes:
    """The response body `{"group_number":N,"batch_number":k,"data":[...]}` as JSON bytes.

    Equal to `orjson.dumps(generate_batch(...).envelope())`, built chunk by chunk so a
    1M-row batch is never held as Python objects all at once.
    """
    parts = []
    for chunk, _ in iter_batch_chunks(network, group_number, cycle, batch_number, seed=seed,
                                      rows=rows, fault_rate=fault_rate, row_format=row_format):
        if chunk:
            parts.append(orjson.dumps(chunk)[1:-1])
    head = b'{"group_number":%d,"batch_number":%d,"data":[' % (group_number, batch_number)
    return head + b",".join(parts) + b"]}"


__all__ = [
    "BATCHES_PER_CYCLE", "Batch", "DEFAULT_ROW_FORMAT", "LOCAL_TZ", "NETWORKS", "NetworkSpec",
    "QUARANTINE_KINDS", "ROW_FAULT_KINDS", "SimulatorConfigError", "Station", "batch_window",
    "cycle_day", "generate_batch", "iter_batch_chunks", "load_contract", "load_stations",
    "local_iso", "network_spec", "render_batch", "stable_seed",
]
