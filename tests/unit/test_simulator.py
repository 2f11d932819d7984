"""The batch API simulator: protocol, cycles, determinism, contract conformance, row faults,
whole-response faults, persistence and speed.

Rows are checked against the contracts (loaded as the project reads them, then as plain
data), by rules written in this file, not by the simulator's own code.
"""

from __future__ import annotations

import csv
import json
import re
import socket
import threading
import time
from collections import Counter
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
import requests
import uvicorn
from fastapi.testclient import TestClient

from lakehouse.contracts import load_contract

from lakehouse.settings import REPO_ROOT
from lakehouse.simulator import (
    QUARANTINE_KINDS,
    ROW_FAULT_KINDS,
    VALID_KINDS,
    create_app,
    generate_batch,
    render_batch,
)
from lakehouse.simulator.__main__ import main as simulator_main
from lakehouse.simulator.app import SimulatorStateError
from lakehouse.simulator.generator import SimulatorConfigError, iter_batch_chunks

PERIOD = 0.2
SEED = 7
ROWS = 300
T0 = 1_800_000_000.0
NETWORKS = ("network-a", "network-b")
# The contracts as plain data (the project's normalised view of each ODCS document; keys
# that are not set are left out).
CONTRACT = {n: load_contract(REPO_ROOT / "contracts" / f"{n.replace('-', '_')}.yaml").model_dump(exclude_none=True)
            for n in NETWORKS}
STATIONS_CSV = REPO_ROOT / "dbt_project" / "seeds" / "station_registry.csv"
MEXICO_CITY = timezone(timedelta(hours=-6))  # no DST in Mexico since 2022


class Clock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def at_batch(self, k: int) -> None:
        """Halfway between the publication of batch k and k+1 of a cycle started at T0."""
        self.t = T0 + (k - 1) * PERIOD + PERIOD / 2


@pytest.fixture
def clock():
    return Clock()


def make_client(tmp_path: Path, clock: Clock, **kw) -> TestClient:
    params = dict(seed=SEED, period_seconds=PERIOD, fault_rate=0.1, rows_per_batch=ROWS,
                  state_file=tmp_path / "sim" / "state.json", clock=clock)
    params.update(kw)
    return TestClient(create_app(**params))


def batch_kwargs(**kw):
    return {"seed": SEED, "rows": ROWS, "fault_rate": 0.1, **kw}


# ---- contract rules, from the contract ---------------------------------------------------------
def violations(row, network: str, fmt: str) -> list[str]:
    fields = CONTRACT[network]["fields"]
    names = [f["name"] for f in fields]
    if fmt == "object":
        if not isinstance(row, dict):
            return [f"row is a {type(row).__name__}, not an object"]
        problems = [f"unknown field {k}" for k in row if k not in names]
        values = row
    else:
        if not isinstance(row, list):
            return [f"row is a {type(row).__name__}, not an array"]
        if len(row) != len(names):
            return [f"{len(row)} elements, contract has {len(names)}"]
        problems, values = [], dict(zip(names, row))
    for f in fields:
        v = values.get(f["name"])
        if v is None:
            if f.get("required"):
                problems.append(f"{f['name']} is null")
            continue
        ok = {"string": isinstance(v, str),
              "double": isinstance(v, (int, float)) and not isinstance(v, bool),
              "long": isinstance(v, int) and not isinstance(v, bool)}[f["type"]]
        if not ok:
            problems.append(f"{f['name']}={v!r} is not a {f['type']}")
            continue
        if "pattern" in f and not re.search(f["pattern"], v):
            problems.append(f"{f['name']}={v!r} does not match {f['pattern']}")
        if "minimum" in f and v < f["minimum"]:
            problems.append(f"{f['name']}={v} below {f['minimum']}")
        if "maximum" in f and v > f["maximum"]:
            problems.append(f"{f['name']}={v} above {f['maximum']}")
    return problems


def field(row, network: str, fmt: str, name: str):
    if fmt == "object":
        return row[name]
    return row[[f["name"] for f in CONTRACT[network]["fields"]].index(name)]


def event_time(row, network: str, fmt: str) -> datetime:
    name = CONTRACT[network]["event_time"]["field"]
    v = field(row, network, fmt, name)
    if network == "network-a":
        return datetime.fromisoformat(v)
    return datetime.fromtimestamp(v / 1000, timezone.utc)


def registry() -> list[dict[str, str]]:
    with open(STATIONS_CSV, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def known_codes(network: str) -> set[str]:
    return {r["source_code"] for r in registry() if r["network"] == network}


def cycle_batches(network: str, fmt: str, group: int = 1, cycle: int = 1, **kw):
    return [generate_batch(network, group, cycle, k,
                           **batch_kwargs(row_format={network: fmt}, **kw))
            for k in range(1, 11)]


# ---- protocol ------------------------------------------------------------------------------
@pytest.mark.parametrize("network", NETWORKS)
def test_data_answers_the_protocol_envelope(tmp_path, clock, network):
    client = make_client(tmp_path, clock)
    r = client.get(f"/{network}/data", params={"group_number": 3})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert list(body) == ["group_number", "batch_number", "data"]
    assert body["group_number"] == 3 and body["batch_number"] == 1
    assert isinstance(body["data"], list) and len(body["data"]) == ROWS
    assert CONTRACT[network]["source"]["path"] == f"/{network}/data"


@pytest.mark.parametrize("path", ["/network-a/data", "/network-b/data",
                                  "/restart_data_generation",
                                  "/network-b/restart_data_generation"])
@pytest.mark.parametrize("query", [{}, {"group_number": "abc"}, {"group_number": -1},
                                   {"group_number": 1.5}])
def test_missing_or_invalid_group_number_is_422(tmp_path, clock, path, query):
    r = make_client(tmp_path, clock).get(path, params=query)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "group_number"]


def test_batches_are_published_one_per_period_and_stay_at_10(tmp_path, clock):
    client = make_client(tmp_path, clock)
    seen = []
    for k in range(1, 11):
        clock.at_batch(k)
        if k == 1:
            clock.t = T0  # the first request starts the cycle at T0
        seen.append(client.get("/network-a/data?group_number=1").json()["batch_number"])
    assert seen == list(range(1, 11))
    clock.t = T0 + 50 * PERIOD
    assert client.get("/network-a/data?group_number=1").json()["batch_number"] == 10
    assert client.get("/network-b/data?group_number=1").json()["batch_number"] == 10
    # at the publication instant itself the new batch is out, float rounding or not
    other_clock = Clock()
    other = make_client(tmp_path / "o", other_clock)
    other.get("/network-a/data?group_number=1")
    for k in range(2, 11):
        other_clock.t = T0 + (k - 1) * PERIOD
        assert other.get("/network-a/data?group_number=1").json()["batch_number"] == k


def test_a_cycle_starts_at_the_first_request_of_its_group(tmp_path, clock):
    client = make_client(tmp_path, clock)
    client.get("/network-a/data?group_number=1")
    clock.at_batch(6)
    assert client.get("/network-a/data?group_number=1").json()["batch_number"] == 6
    assert client.get("/network-b/data?group_number=2").json()["batch_number"] == 1
    state = client.get("/_control/state").json()["groups"]
    assert state["1"]["current_batch"] == 6 and state["2"]["current_batch"] == 1


def test_repeated_polls_serve_the_same_batch_without_regenerating(tmp_path, clock, monkeypatch):
    client = make_client(tmp_path, clock)
    import lakehouse.simulator.app as app_module
    calls = []
    real = app_module.render_batch

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(app_module, "render_batch", counting)
    first = client.get("/network-a/data?group_number=1").content
    assert client.get("/network-a/data?group_number=1").content == first
    assert len(calls) == 1
    clock.at_batch(2)
    assert client.get("/network-a/data?group_number=1").content != first
    assert len(calls) == 2


def test_restart_starts_a_new_cycle_for_both_networks_with_new_data(tmp_path, clock):
    client = make_client(tmp_path, clock)
    a1 = client.get("/network-a/data?group_number=1")
    b1 = client.get("/network-b/data?group_number=1")
    assert a1.headers["x-simulator-cycle"] == "1"
    clock.at_batch(7)
    r = client.get("/restart_data_generation?group_number=1")
    assert r.status_code == 200
    body = r.json()
    assert body["group_number"] == 1 and body["cycle"] == 2 and "restarted" in body["message"]
    a2 = client.get("/network-a/data?group_number=1")
    b2 = client.get("/network-b/data?group_number=1")
    assert a2.json()["batch_number"] == 1 and b2.json()["batch_number"] == 1
    assert a2.headers["x-simulator-cycle"] == b2.headers["x-simulator-cycle"] == "2"
    assert a2.json()["data"] != a1.json()["data"] and b2.json()["data"] != b1.json()["data"]
    assert a2.content == render_batch("network-a", 1, 2, 1, **batch_kwargs())
    # the restart under a network's prefix is the same operation
    r = client.get("/network-b/restart_data_generation?group_number=1")
    assert r.json()["cycle"] == 3
    assert client.get("/network-a/data?group_number=1").headers["x-simulator-cycle"] == "3"
    # other groups are untouched
    assert client.get("/_control/state").json()["groups"]["1"]["cycle"] == 3


# ---- determinism ---------------------------------------------------------------------------
def test_served_body_is_the_pure_functions_output(tmp_path, clock):
    client = make_client(tmp_path, clock)
    clock.t = T0
    client.get("/network-b/data?group_number=4")
    clock.at_batch(3)
    served = client.get("/network-b/data?group_number=4").content
    batch = generate_batch("network-b", 4, 1, 3, **batch_kwargs())
    assert served == render_batch("network-b", 4, 1, 3, **batch_kwargs())
    assert served == orjson.dumps(batch.envelope())
    assert len(batch.faults) == len(batch.data) == ROWS


def test_same_inputs_give_identical_bytes_and_other_inputs_differ(tmp_path):
    one = make_client(tmp_path / "1", Clock()).get("/network-a/data?group_number=1").content
    # another app, another state file, another start time: same seed/group/cycle/batch
    two = make_client(tmp_path / "2", Clock(T0 + 12345)).get(
        "/network-a/data?group_number=1").content
    assert one == two
    data = orjson.loads(one)["data"]
    for other in (render_batch("network-a", 2, 1, 1, **batch_kwargs()),
                  render_batch("network-a", 1, 2, 1, **batch_kwargs()),
                  render_batch("network-a", 1, 1, 2, **batch_kwargs()),
                  render_batch("network-a", 1, 1, 1, **batch_kwargs(seed=SEED + 1))):
        assert orjson.loads(other)["data"] != data
    # how the generator chunks its work never shows in the output
    chunks = [row for c, _ in iter_batch_chunks("network-a", 1, 1, 1, chunk_rows=7,
                                                **batch_kwargs()) for row in c]
    assert chunks == data


def test_determinism_does_not_depend_on_python_hash_seed(tmp_path):
    import subprocess
    import sys
    code = ("from lakehouse.simulator import render_batch; import hashlib; "
            "print(hashlib.sha256(render_batch('network-b', 1, 1, 2, seed=7, rows=300, "
            "fault_rate=0.1)).hexdigest())")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, cwd=REPO_ROOT, env={"PYTHONHASHSEED": str(s)}).stdout
            for s in (1, 2)}
    assert len(outs) == 1


# ---- contract conformance and row faults ---------------------------------------------------
@pytest.mark.parametrize("fmt", ["object", "array"])
@pytest.mark.parametrize("network", NETWORKS)
def test_every_row_meets_the_contract_except_quarantine_faults(network, fmt):
    for batch in cycle_batches(network, fmt):
        assert len(batch.data) == len(batch.faults) == ROWS
        for i, (row, kind) in enumerate(zip(batch.data, batch.faults)):
            problems = violations(row, network, fmt)
            if kind in QUARANTINE_KINDS:
                assert problems, f"batch {batch.batch_number} row {i} ({kind}) passes: {row}"
            else:
                assert not problems, f"batch {batch.batch_number} row {i} ({kind}): {problems}"


@pytest.mark.parametrize("fmt", ["object", "array"])
@pytest.mark.parametrize("network", NETWORKS)
def test_every_fault_kind_occurs_at_10_percent_and_does_what_it_says(network, fmt):
    id_field = CONTRACT[network]["natural_key"][0]
    counts = Counter()
    for batch in cycle_batches(network, fmt):
        counts.update(k for k in batch.faults if k)
        assert sum(1 for k in batch.faults if k) == round(ROWS * 0.1)
        start, end = batch.window_start, batch.window_end
        clean_times = []
        for i, (row, kind) in enumerate(zip(batch.data, batch.faults)):
            if kind is None:
                t = event_time(row, network, fmt)
                assert start <= t < end
                assert field(row, network, fmt, id_field) in known_codes(network)
                assert not clean_times or t >= clean_times[-1], "regular rows ascend"
                clean_times.append(t)
            elif kind == "duplicate":
                assert row in batch.data[:i]
            elif kind == "late":
                lag = start - event_time(row, network, fmt)
                assert timedelta(hours=1) <= lag <= timedelta(hours=48)
            elif kind == "out_of_order":
                t = event_time(row, network, fmt)
                assert start <= t < end and clean_times and t < max(clean_times)
            elif kind == "unknown_station":
                code = field(row, network, fmt, id_field)
                assert code not in known_codes(network)
            elif kind == "malformed":
                if fmt == "object":
                    assert isinstance(row, (str, int, float))
                else:
                    assert isinstance(row, list) and len(row) < len(CONTRACT[network]["fields"])
            elif kind == "drift_renamed":
                if fmt == "object":
                    assert set(row) - {f["name"] for f in CONTRACT[network]["fields"]}
                else:
                    assert len(row) == len(CONTRACT[network]["fields"]) + 1
            elif kind == "drift_type":
                metrics = [f["name"] for f in CONTRACT[network]["fields"][2:]]
                assert any(isinstance(field(row, network, fmt, m), str) for m in metrics)
    assert set(counts) == set(ROW_FAULT_KINDS), counts
    assert sum(counts.values()) == 10 * round(ROWS * 0.1)


@pytest.mark.parametrize("network", NETWORKS)
def test_natural_keys_are_unique_across_a_cycle_except_duplicates(network):
    key_field = CONTRACT[network]["natural_key"]
    keys = Counter()
    for batch in cycle_batches(network, "object"):
        for row, kind in zip(batch.data, batch.faults):
            if kind in VALID_KINDS - {"duplicate"} or kind is None:
                keys[tuple(row[k] for k in key_field)] += 1
    assert keys and max(keys.values()) == 1


def test_fault_rate_zero_gives_only_clean_rows():
    for network in NETWORKS:
        batch = generate_batch(network, 1, 1, 5, **batch_kwargs(fault_rate=0))
        assert set(batch.faults) == {None}
        fmt = "object" if network == "network-a" else "array"
        assert all(not violations(r, network, fmt) for r in batch.data)


def test_fault_kinds_partition_into_quarantine_and_valid():
    assert QUARANTINE_KINDS == {"malformed", "out_of_range", "null_required", "drift_renamed",
                                "drift_type"}
    assert VALID_KINDS == {"duplicate", "late", "out_of_order", "unknown_station"}
    assert set(ROW_FAULT_KINDS) == QUARANTINE_KINDS | VALID_KINDS


def test_values_are_plausible_in_the_contract_units():
    a = generate_batch("network-a", 1, 1, 9, **batch_kwargs(fault_rate=0)).data
    b = generate_batch("network-b", 1, 1, 9, **batch_kwargs(fault_rate=0)).data
    assert all(0 < r["pm25"] < 150 and r["pm10"] > r["pm25"] for r in a)
    assert all(0 <= r["relative_humidity"] <= 100 and -5 < r["temperature"] < 35 for r in a)
    assert all(0 < r["o3"] < 200 and 0 < r["no2"] < 200 for r in a)
    # B: ozone ppm, Fahrenheit, humidity fraction, battery 3.3-4.2 V
    assert all(0 < r[3] < 0.2 and 25 < r[4] < 95 and 0 < r[5] < 1 and 3.3 <= r[6] <= 4.2
               for r in b)
    # afternoon (batch 9: 14:00-15:00) is warmer and richer in ozone than dawn (batch 1)
    dawn = generate_batch("network-a", 1, 1, 1, **batch_kwargs(fault_rate=0)).data
    mean = lambda rows, k: sum(r[k] for r in rows) / len(rows)  # noqa: E731
    assert mean(a, "temperature") > mean(dawn, "temperature") + 3
    assert mean(a, "o3") > mean(dawn, "o3") * 3


def test_event_times_follow_the_day_and_hour_layout():
    # group 2, cycle 3: 2026-01-01 + (3*3 + 2) days; batch 4: 09:00-10:00 local
    a = generate_batch("network-a", 2, 3, 4, **batch_kwargs(fault_rate=0))
    b = generate_batch("network-b", 2, 3, 4, **batch_kwargs(fault_rate=0))
    start = datetime(2026, 1, 12, 9, 0, tzinfo=MEXICO_CITY)
    assert a.window_start == start and a.window_end == start + timedelta(hours=1)
    assert a.data[0]["timestamp"] == "2026-01-12T09:00:00-06:00"
    assert all(re.fullmatch(r"2026-01-12T09:\d\d:\d\d-06:00", r["timestamp"]) for r in a.data)
    assert b.data[0][1] == int(start.timestamp() * 1000)
    assert all(start.timestamp() * 1000 <= r[1] < (start.timestamp() + 3600) * 1000
               for r in b.data)
    # rows spread over all stations and over the whole hour
    assert {r["station_code"] for r in a.data} == known_codes("network-a")
    assert a.data[-1]["timestamp"] >= "2026-01-12T09:55:00-06:00"


def test_row_format_is_a_parameter(tmp_path, clock):
    flipped = {"network-a": "array", "network-b": "object"}
    client = make_client(tmp_path, clock, row_format=flipped)
    a = client.get("/network-a/data?group_number=1").json()["data"]
    b = client.get("/network-b/data?group_number=1").json()["data"]
    names_a = [f["name"] for f in CONTRACT["network-a"]["fields"]]
    names_b = [f["name"] for f in CONTRACT["network-b"]["fields"]]
    batch = generate_batch("network-a", 1, 1, 1, **batch_kwargs(row_format=flipped))
    clean = [r for r, k in zip(a, batch.faults) if k is None]
    assert clean and all(isinstance(r, list) and len(r) == len(names_a) for r in clean)
    assert all(re.fullmatch(r"[A-Z]{3}-\d{3}", r[0]) for r in clean)
    assert all(isinstance(r, dict) and list(r) == names_b
               for r, k in zip(b, generate_batch("network-b", 1, 1, 1, **batch_kwargs(
                   row_format=flipped)).faults) if k is None)
    # the default: A objects, B arrays in the contract's field order
    default = make_client(tmp_path / "d", Clock())
    row_a = default.get("/network-a/data?group_number=9").json()["data"][0]
    row_b = default.get("/network-b/data?group_number=9").json()["data"][0]
    assert isinstance(row_a, dict) and isinstance(row_b, list) and len(row_b) == len(names_b)
    with pytest.raises(SimulatorConfigError):
        make_client(tmp_path / "x", clock, row_format={"network-a": "csv"})


def test_stations_registry():
    rows = registry()
    assert list(rows[0]) == ["network", "source_code", "station_id", "state_code", "state_name",
                             "municipality_code", "municipality_name"]
    a = [r for r in rows if r["network"] == "network-a"]
    b = [r for r in rows if r["network"] == "network-b"]
    assert 10 <= len(a) <= 14 and 8 <= len(b) <= 12
    for network, group in (("network-a", a), ("network-b", b)):
        pattern = CONTRACT[network]["fields"][0]["pattern"]
        assert all(re.search(pattern, r["source_code"]) for r in group)
        assert len({r["source_code"] for r in group}) == len(group)
    assert all(re.fullmatch(r"\d{2}", r["state_code"]) and
               re.fullmatch(r"\d{3}", r["municipality_code"]) for r in rows)
    assert len({r["state_code"] for r in rows}) >= 4
    colocated = {r["station_id"] for r in a} & {r["station_id"] for r in b}
    assert len(colocated) >= 3
    geo = {}
    for r in rows:  # one canonical station, one place
        place = (r["state_code"], r["state_name"], r["municipality_code"], r["municipality_name"])
        assert geo.setdefault(r["station_id"], place) == place


# ---- persistence ---------------------------------------------------------------------------
def test_cycle_state_survives_a_restart_of_the_simulator(tmp_path, clock):
    state_file = tmp_path / "sim" / "state.json"
    first = make_client(tmp_path, clock)
    first.get("/network-a/data?group_number=1")
    first.get("/restart_data_generation?group_number=1")  # cycle 2 starts at T0
    saved = json.loads(state_file.read_text())
    assert saved["groups"]["1"]["cycle"] == 2
    assert [p.name for p in state_file.parent.iterdir()] == ["state.json"]  # no temp left over

    clock.at_batch(4)
    second = make_client(tmp_path, clock)  # a new process, the same state file
    r = second.get("/network-a/data?group_number=1")
    assert r.json()["batch_number"] == 4 and r.headers["x-simulator-cycle"] == "2"
    assert r.content == render_batch("network-a", 1, 2, 4, **batch_kwargs())


def test_a_corrupt_state_file_is_a_clear_error(tmp_path, clock):
    state_file = tmp_path / "sim" / "state.json"
    state_file.parent.mkdir(parents=True)
    state_file.write_text("{not json")
    with pytest.raises(SimulatorStateError) as err:
        make_client(tmp_path, clock)
    assert str(state_file) in str(err.value) and "delete" in str(err.value)


# ---- whole-response faults -----------------------------------------------------------------
def arm(client, network, kind, times=1, **kw):
    r = client.post("/_control/faults", json={"network": network, "kind": kind,
                                              "times": times, **kw})
    assert r.status_code == 200, r.text
    return r.json()


def test_http_500_invalid_json_empty_data_and_wrong_shape(tmp_path, clock):
    client = make_client(tmp_path, clock)
    normal = client.get("/network-a/data?group_number=1").content

    arm(client, "network-a", "http_500", times=2)
    assert client.get("/_control/state").json()["armed_faults"]["network-a"]["remaining"] == 2
    assert client.get("/network-b/data?group_number=1").status_code == 200  # other network
    assert [client.get("/network-a/data?group_number=1").status_code for _ in range(3)] == \
        [500, 500, 200]

    arm(client, "network-a", "invalid_json")
    r = client.get("/network-a/data?group_number=1")
    assert r.status_code == 200 and r.content.startswith(b'{"group_number": 1, "batch_number"')
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.content)

    arm(client, "network-b", "empty_data")
    assert client.get("/network-b/data?group_number=1").json() == \
        {"group_number": 1, "batch_number": 1, "data": []}

    arm(client, "network-a", "wrong_shape", times=2)
    listed = client.get("/network-a/data?group_number=1").json()
    assert isinstance(listed, list) and listed == orjson.loads(normal)["data"]
    no_data = client.get("/network-a/data?group_number=1").json()
    assert isinstance(no_data, dict) and "data" not in no_data

    arm(client, "network-a", "http_500", times=5)
    r = client.delete("/_control/faults")
    assert r.json()["disarmed"] == ["network-a"] and r.json()["armed"] == {}
    assert client.get("/network-a/data?group_number=1").content == normal


def test_control_requests_are_validated_and_documented(tmp_path, clock):
    client = make_client(tmp_path, clock)
    assert client.post("/_control/faults", json={"network": "network-a",
                                                 "kind": "gremlins"}).status_code == 422
    assert client.post("/_control/faults", json={"network": "network-c",
                                                 "kind": "http_500"}).status_code == 422
    assert client.post("/_control/faults", json={"network": "network-a", "kind": "http_500",
                                                 "times": 0}).status_code == 422
    spec = client.get("/openapi.json").json()
    for path, method in (("/_control/faults", "post"), ("/_control/faults", "delete"),
                         ("/_control/state", "get")):
        assert spec["paths"][path][method]["tags"] == ["control"]
    for path in ("/network-a/data", "/network-b/data", "/restart_data_generation"):
        params = spec["paths"][path]["get"]["parameters"]
        assert params[0]["name"] == "group_number" and params[0]["required"] is True
    assert client.get("/docs").status_code == 200
    assert client.get("/health").json() == {"status": "ok"}


@contextmanager
def real_server(app):
    """uvicorn on 127.0.0.1, an ephemeral port, in a thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical",
                                           timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_truncated_and_timeout_against_a_real_server(tmp_path):
    app = create_app(seed=SEED, period_seconds=300, fault_rate=0.1, rows_per_batch=ROWS,
                     state_file=tmp_path / "state.json")
    with real_server(app) as url:
        data_url = f"{url}/network-a/data?group_number=1"
        normal = requests.get(data_url, timeout=10)
        assert normal.status_code == 200 and len(normal.json()["data"]) == ROWS

        requests.post(f"{url}/_control/faults", json={"network": "network-a",
                                                      "kind": "truncated"}, timeout=5)
        with pytest.raises(requests.exceptions.ChunkedEncodingError, match="IncompleteRead"):
            requests.get(data_url, timeout=10)

        requests.post(f"{url}/_control/faults", json={"network": "network-a", "kind": "timeout",
                                                      "delay_seconds": 1.0}, timeout=5)
        t = time.monotonic()
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.get(data_url, timeout=0.3)
        assert time.monotonic() - t < 1.0

        again = requests.get(data_url, timeout=10)  # disarmed after `times` responses
        assert again.content == normal.content


# ---- CLI and speed -------------------------------------------------------------------------
def test_cli_help_and_bad_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        simulator_main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for option in ("--host", "--port", "--seed", "--period", "--fault-rate", "--rows-per-batch",
                   "--state-file", "/network-a/data", "restart_data_generation"):
        assert option in out
    assert "127.0.0.1" in out
    assert simulator_main(["--fault-rate", "1.5"]) == 2
    assert "--fault-rate 1.5" in capsys.readouterr().err


def test_one_million_rows_generate_and_serialize_fast():
    t = time.perf_counter()
    body = render_batch("network-a", 1, 1, 1, seed=SEED, rows=1_000_000, fault_rate=0.03)
    seconds = time.perf_counter() - t
    print(f"\n1M rows of network-a: generated and serialized in {seconds:.1f} s "
          f"({len(body) / 1e6:.0f} MB)")
    assert seconds < 60
    assert body.startswith(b'{"group_number":1,"batch_number":1,"data":[{"station_code":')
    assert body.count(b'"station_code":') > 0.99 * 1_000_000
