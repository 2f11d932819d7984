"""Per-row validation: every row is valid or quarantined with its reasons; nothing else."""

import pytest

from lakehouse.contracts import load_all
from lakehouse.ingest.fetch import PayloadError, parse_envelope
from lakehouse.ingest.validate import validate_rows

A = {"station_code": "MEX-001", "timestamp": "2026-01-01T06:00:00-06:00", "pm25": 10.5, "pm10": 20,
     "o3": 30, "no2": 10, "temperature": 15, "relative_humidity": 50}
B = ["iot-00aa11", 1767268800000, 5.0, 0.03, 70.0, 0.5, 3.9]


@pytest.fixture(scope="module")
def contracts():
    return load_all()


def _reasons(v):
    return {q.index: q.reasons for q in v.quarantined}


@pytest.mark.parametrize("change, reason", [
    ({"station_code": None}, "station_code: required, got null"),
    ({"timestamp": None}, "timestamp: required, got null"),
    ({"pm25": -1}, "pm25: outside [0.0, 1000.0] (got -1.0)"),
    ({"relative_humidity": 170}, "relative_humidity: outside [0.0, 100.0]"),
    ({"pm25": "12.4"}, "pm25: expected double, got str '12.4' (type mismatch"),
    ({"pm25": True}, "pm25: expected double, got bool"),
    ({"station_code": "mex1"}, "station_code: does not match"),
    ({"timestamp": "2026-01-01 06:00"}, "timestamp: does not match"),
    ({"timestamp": "2026-02-30T06:00:00-06:00"}, "timestamp: not a valid iso8601_offset event time"),
    ({"pm2_5_ugm3": 3.0}, "pm2_5_ugm3: unknown field (schema drift"),
])
def test_network_a_faults_are_quarantined_with_their_reason(contracts, change, reason):
    v = validate_rows(contracts["network_a"], [A, {**A, **change}, A])
    assert (v.rows_in, v.rows_valid, v.rows_quarantined) == (3, 2, 1)
    assert list(_reasons(v)) == [1]
    assert any(r.startswith(reason) for r in _reasons(v)[1]), _reasons(v)[1]


@pytest.mark.parametrize("row, reason", [
    (B[:3], "malformed row: array of 3 values, the contract has 7 fields"),
    (B + [1], "malformed row: array of 8 values"),
    ("garbage", "malformed row: expected a JSON object or array, got str"),
    (42, "malformed row: expected a JSON object or array, got int"),
    (B[:3] + [1.5] + B[4:], "ozone: outside [0.0, 1.0] (got 1.5)"),
    (B[:1] + [1767268800000.5] + B[2:], "ts: expected long, got float"),
    ([None] + B[1:], "device_id: required, got null"),
    (B[:1] + [10] + B[2:], "ts: outside [1577836800000.0, 4102444800000.0]"),
    (B[:1] + [2**70] + B[2:], "ts: expected long, got int 1180591620717411303424 that does not fit"),
])
def test_network_b_array_rows(contracts, row, reason):
    v = validate_rows(contracts["network_b"], [B, row])
    assert (v.rows_valid, v.rows_quarantined) == (1, 1)
    assert any(r.startswith(reason) for r in _reasons(v)[1]), _reasons(v)[1]


def test_object_rows_work_for_network_b_too(contracts):
    c = contracts["network_b"]
    v = validate_rows(c, [dict(zip(c.field_names, B)), B])
    assert v.rows_valid == 2


def test_valid_rows_keep_values_and_get_utc_event_time(contracts):
    v = validate_rows(contracts["network_a"], [A])
    row = v.valid.iloc[0]
    assert row["station_code"] == "MEX-001" and row["pm25"] == 10.5
    assert str(row["_event_time"]) == "2026-01-01 12:00:00"
    vb = validate_rows(contracts["network_b"], [B])
    assert str(vb.valid.iloc[0]["_event_time"]) == "2026-01-01 12:00:00"


def test_every_reason_of_a_row_is_kept_and_payload_is_as_sent(contracts):
    bad = {**A, "station_code": None, "pm25": -3, "o3": 5000}
    v = validate_rows(contracts["network_a"], [bad])
    (q,) = v.quarantined
    assert len(q.reasons) == 3
    assert '"station_code":null' in q.raw and '"pm25":-3' in q.raw


def test_duplicates_and_unknown_stations_are_valid_rows(contracts):
    v = validate_rows(contracts["network_a"], [A, A, {**A, "station_code": "ZZZ-999"}])
    assert v.rows_valid == 3


@pytest.mark.parametrize("body, message", [
    (b'{"group_number": 1, "batch_number"', "not valid JSON"),
    (b"[1, 2, 3]", "got a JSON list"),
    (b'{"group_number": 1, "batch_number": 2}', "missing 'data'"),
    (b'{"group_number": 1, "batch_number": "2", "data": [1]}', "'batch_number' is a str"),
    (b'{"group_number": 2, "batch_number": 2, "data": [1]}', "asked for group 1, the API answered group 2"),
    (b'{"group_number": 1, "batch_number": 3, "data": []}', "batch 3: empty 'data' array"),
])
def test_bad_envelopes_name_the_problem(body, message):
    with pytest.raises(PayloadError, match=message.replace("[", r"\[")) as err:
        parse_envelope(body, source="network_a", group=1)
    assert "network_a" in str(err.value)


def test_vectorised_event_times_agree_with_the_per_row_rules():
    """The column-wise parse gives what datetime.fromisoformat gives, row by row, and sends
    what it can't parse to the per-row path, which explains the failure."""
    from datetime import datetime, timezone

    import pyarrow as pa

    from lakehouse.ingest.validate import event_times

    values = ([
        "2026-01-05T08:30:00-06:00",      # common shape: vectorised
        "2026-01-05T14:30:00Z",           # Z suffix: vectorised
        "2026-01-05T14:30:00.25+05:30",   # fraction: vectorised
        "2026-13-05T08:30:00-06:00",      # common shape, impossible month: falls back, fails
        "2026-01-05T08:30:00",            # no offset: per row, fails
        "2026-01-05 08:30:00-06:00",      # space separator: per row, accepted by fromisoformat
    ])
    times, errors = event_times("iso8601_offset", pa.array(values))
    for pos in (0, 1, 2, 5):
        expected = datetime.fromisoformat(values[pos]).astimezone(timezone.utc).replace(tzinfo=None)
        assert times[pos].as_py() == expected, pos
    assert times.null_count == 2 and times[3].as_py() is None and times[4].as_py() is None
    assert set(errors) == {3, 4}
    assert "month must be in 1..12" in errors[3]
    assert "no UTC offset" in errors[4]


def test_vectorised_epoch_ms_keeps_milliseconds_and_rejects_out_of_range():
    from datetime import datetime

    import pyarrow as pa

    from lakehouse.ingest.validate import event_times

    values = pa.array([1767623400123, 10**18, -62135596800000 + 1000], pa.int64())
    times, errors = event_times("epoch_ms", values)
    assert times[0].as_py() == datetime(2026, 1, 5, 14, 30, 0, 123000)
    assert times[2].as_py() == datetime(1, 1, 1, 0, 0, 1)  # outside Arrow's fast range: per row, accepted
    assert list(errors) == [1] and "not a valid epoch_ms event time" in errors[1]


def test_impossible_dates_in_the_common_shape_fall_back_to_the_per_row_rule():
    """Arrow refuses a chunk with one impossible date; the chunk's other rows still parse."""
    import pyarrow as pa

    from lakehouse.ingest.validate import event_times

    values = ["2026-01-05T08:30:00-06:00"] * 70_000
    values[69_999] = "2026-02-30T08:30:00-06:00"
    times, errors = event_times("iso8601_offset", pa.array(values))
    assert list(errors) == [69_999] and "day is out of range" in errors[69_999]
    assert times.null_count == 1 and str(times[69_998].as_py()) == "2026-01-05 14:30:00"


@pytest.mark.parametrize("pattern, value, matches", [
    (r"^[A-Z]{3}-[0-9]{3}$", "MEX-001", True),
    (r"^[A-Z]{3}-[0-9]{3}$", "MEX-001\n", True),      # Python's $ matches before a final newline
    (r"^\d{3}$", "\u0661\u0662\u0663", True),          # Python's \d is Unicode: Arabic-Indic digits
    (r"^\D+$", "\u0661", False),                       # ... so \D is not (RE2's is): re decides
    (r"^(?=M)[A-Z]+$", "MEX", True),                   # a lookahead RE2 lacks: re decides
    (r"x", None, None),
])
def test_patterns_follow_pythons_re_where_re2_differs(pattern, value, matches):
    import pyarrow as pa

    from lakehouse.ingest.validate import pattern_matches

    assert pattern_matches(pa.array([value], pa.string()), pattern)[0].as_py() is matches


@pytest.mark.parametrize("network", ["network_a", "network_b"])
def test_compiled_row_checks_give_the_great_expectations_suites_reasons(contracts, network):
    """The per-batch checks are the contract's GE suite compiled to column operations: on
    a faulty simulator batch, GE itself flags the same rows with the same reasons."""
    import orjson

    from lakehouse.ingest.validate import expectations_with_gx, row_checks, typed_table
    from lakehouse.simulator.generator import render_batch

    rows = orjson.loads(render_batch(network.replace("_", "-"), 1, 1, 3, seed=7, rows=3000, fault_rate=0.2))["data"]
    table, _ = typed_table(contracts[network], rows)
    ours, theirs = [], []
    compiled = row_checks(contracts[network], table, ours)
    assert compiled, "the batch has faults the row checks catch"
    assert compiled == expectations_with_gx(contracts[network], table, theirs)
    # the per-batch result kept in the audit log counts what GE counts, expectation by expectation
    assert any(not r["success"] for r in ours)
    assert [(r["expectation_config"]["type"], r["expectation_config"]["kwargs"]["column"], r["success"],
             r["result"]["element_count"], r["result"]["unexpected_count"],
             round(r["result"]["unexpected_percent"], 3)) for r in ours] == \
        [(r["type"], r["column"], r["success"], r["element_count"], r["unexpected_count"],
          round(r["unexpected_percent"], 3)) for r in theirs]
    assert [r["result"]["missing_count"] for r in ours if "not_be_null" not in r["expectation_config"]["type"]] == \
        [r["missing_count"] for r in theirs if "not_be_null" not in r["type"]]


# ---- richer types (issue 14): a forest-cover-like source, rows as arrays of strings --------
def _typed_contract(**event_time):
    from lakehouse.contracts.model import Contract, Endpoint, FieldSpec

    text = {"delivered_as": "string"}
    fields = [
        FieldSpec(name="plot_id", type="integer", required=True, description="plot", **text),
        FieldSpec(name="elevation", type="long", description="m", minimum=0, maximum=9000, **text),
        FieldSpec(name="cover", type="decimal", precision=5, scale=2, description="share", **text),
        FieldSpec(name="slope", type="double", description="deg", **text),
        FieldSpec(name="burnt", type="boolean", description="fire", **text),
        FieldSpec(name="surveyed_on", type="date", description="day"),
        FieldSpec(name="seen_at", type="timestamp", description="when", zone="Europe/Madrid"),
        FieldSpec(name="logged_at", type="timestamp", description="when (utc)"),
        FieldSpec(name="epoch_s", type="timestamp", time_format="epoch_seconds", description="s"),
    ]
    return Contract(id="forest", title="Forest", owner="o@x", description="d", version="1.0.0",
                    source=Endpoint(path="/plots"), table="forest", natural_key=["plot_id"],
                    event_time=event_time or None,
                    partitioning="day(event_time)" if event_time else "day(ingested_at)", fields=fields)


GOOD = ["7", "2310", "41.25", "12.5", "false", "2026-03-01", "2026-03-01T10:00:00", "2026-03-01T10:00:00Z",
        1772359200.5]


@pytest.mark.parametrize("at, value, reason", [
    (0, "7.5", "plot_id: '7.5' is not an integer (delivered as text; the contract says deliveredAs: string)"),
    (0, "99999999999", "plot_id: expected integer, got int 99999999999 that does not fit"),
    (1, "-3", "elevation: outside [0.0, 9000.0] (got -3)"),
    (2, "1234.5", "cover: '1234.5' overflows decimal(5,2) (at most 999.99)"),
    (2, "1.234", "cover: '1.234' has more than 2 decimal places, which decimal(5,2) would round away"),
    (2, "lots", "cover: 'lots' is not a decimal"),
    (3, "steep", "slope: 'steep' is not a double"),
    (4, "maybe", "burnt: 'maybe' is not a boolean"),
    (4, 1, "burnt: expected boolean (or its text), got int 1 (type mismatch"),
    (5, "01/03/2026", "surveyed_on: not a valid date (got '01/03/2026'"),
    (7, "2026-03-01T10:00:00", "logged_at: not a valid iso8601_offset time (got '2026-03-01T10:00:00': no UTC "
                               "offset, and the contract declares no zone for times without one"),
    (8, "1772359200", "epoch_s: expected timestamp (epoch_seconds), got str"),
])
def test_typed_values_are_converted_or_quarantined_with_their_reason(at, value, reason):
    contract = _typed_contract()
    bad = list(GOOD)
    bad[at] = value
    v = validate_rows(contract, [GOOD, bad])
    assert v.rows_valid == 1 and v.rows_quarantined == 1
    assert v.quarantined[0].index == 1 and any(r.startswith(reason) for r in v.quarantined[0].reasons), \
        v.quarantined[0].reasons


def test_typed_values_convert_exactly():
    from datetime import date, datetime
    from decimal import Decimal

    v = validate_rows(_typed_contract(), [GOOD, ["8", "0", "-999.99", "1e2", "TRUE", None, None, None, None]])
    assert v.rows_quarantined == 0
    rows = v.table.to_pylist()
    assert rows[0]["plot_id"] == 7 and rows[0]["elevation"] == 2310 and rows[0]["cover"] == Decimal("41.25")
    assert rows[0]["slope"] == 12.5 and rows[0]["burnt"] is False and rows[0]["surveyed_on"] == date(2026, 3, 1)
    assert rows[0]["seen_at"] == datetime(2026, 3, 1, 9, 0)       # 10:00 in Madrid (UTC+1) is 09:00 UTC
    assert rows[0]["logged_at"] == datetime(2026, 3, 1, 10, 0)
    assert rows[0]["epoch_s"] == datetime(2026, 3, 1, 10, 0, 0, 500000)
    assert rows[0]["_event_time"] is None                          # no event time declared
    assert rows[1]["cover"] == Decimal("-999.99") and rows[1]["slope"] == 100.0 and rows[1]["burnt"] is True
    assert str(v.table.schema.field("plot_id").type) == "int32"
    assert str(v.table.schema.field("cover").type) == "decimal128(5, 2)"


def test_a_timestamp_field_is_the_event_time():
    from datetime import datetime

    v = validate_rows(_typed_contract(field="seen_at"), [GOOD])
    assert v.table.to_pylist()[0]["_event_time"] == datetime(2026, 3, 1, 9, 0)
