"""The contract's quality gate that the ingestion DAG's `quality_gate` task applies."""

import pytest

from lakehouse.contracts import load_all
from lakehouse.ingest.quality import QualityError, check_batch

CONTRACT = load_all()["network_a"]  # max_quarantine_rate 0.10


def result(status="committed", rows_in=1000, bad=18, batch_id="network_a/g1/b4/abc"):
    return {"batch_id": batch_id, "status": status, "rows_in": rows_in, "rows_quarantined": bad}


def test_below_the_limit_passes_and_says_the_rate():
    assert check_batch(CONTRACT, result(bad=100)) == \
        "network_a/g1/b4/abc: 100 of 1000 rows quarantined (10.0%); the contract allows 10.0%"


@pytest.mark.parametrize("status", ["committed", "replayed"])
def test_above_the_limit_fails_naming_batch_rate_and_limit(status):
    with pytest.raises(QualityError) as err:
        check_batch(CONTRACT, result(status=status, bad=101))
    text = str(err.value)
    assert "network_a/g1/b4/abc: 101 of 1000 rows quarantined (10.1%); the contract allows 10.0%" in text
    assert "quarantine.network_a" in text and "contracts/network_a.yaml" in text


def test_a_batch_without_rows_is_not_rated():
    assert "no rows to rate" in check_batch(CONTRACT, result(status="rejected", rows_in=0, bad=0))


def test_a_result_that_is_not_ingest_output_is_a_clear_error():
    with pytest.raises(QualityError, match="has no 'rows_in'"):
        check_batch(CONTRACT, {"batch_id": "x", "status": "committed", "rows_quarantined": 3})


def test_missed_batches_fail_the_gate_naming_each():
    from lakehouse.ingest.quality import check_complete

    assert check_complete(CONTRACT, result()) == "network_a/g1/b4/abc: no batch missed"
    missed = {**result(), "missed": ["network_a/g1/b2/missed", "network_a/g1/b3/missed"]}
    with pytest.raises(QualityError) as err:
        check_complete(CONTRACT, missed)
    assert "2 batch(es) missed before network_a/g1/b4/abc arrived: network_a/g1/b2/missed, " \
           "network_a/g1/b3/missed" in str(err.value)
    assert "status 'missed'" in str(err.value)


# ---- the gate before publish (issue 14) ------------------------------------------------------
def _gated(contract, rules, limit=0.10):
    from lakehouse.contracts.model import BatchRule, Quality

    return contract.model_copy(update={"rules": [BatchRule(**r) for r in rules],
                                       "quality": Quality(max_quarantine_rate=limit)})


def test_gate_holds_a_batch_above_its_quarantine_limit_or_breaking_a_rule():
    import pyarrow as pa

    from lakehouse.contracts import load_all
    from lakehouse.ingest.quality import gate

    c = load_all()["network_a"]
    table = pa.table({"station_code": ["A", "A", "B", None], "pm25": [1.0, None, None, 3.0],
                      "timestamp": ["t1", "t1", "t2", "t3"]})
    rules = [
        {"name": "rows", "metric": "rowCount", "operator": "mustBeGreaterOrEqualTo", "value": 4},
        {"name": "pm25 nulls", "metric": "nullValues", "fields": ["pm25"], "unit": "percent",
         "operator": "mustBeLessOrEqualTo", "value": 50},
        {"name": "key", "metric": "duplicateValues", "fields": ["station_code", "timestamp"], "operator": "mustBe",
         "value": 0},
    ]
    verdict = gate(_gated(c, rules), 5, 1, table)
    # 1 of 5 quarantined is 20% > 10%; one repeated (A, t1); 2 of 4 pm25 null is 50%: holds
    assert verdict["held"] is True
    assert verdict["reasons"] == [
        "quarantine rate 20.0% (1 of 5 rows) is above the contract's maxQuarantineRate 10.0%",
        "key: repeated values of station_code, timestamp mustBe 0 does not hold (measured 1)"]
    assert [(r["rule"], r["measured"], r["holds"]) for r in verdict["rules"]] == [
        ("rows", 4, True), ("pm25 nulls", 50.0, True), ("key", 1, False)]
    passing = gate(_gated(c, rules[:2], limit=0.25), 5, 1, table)
    assert passing["held"] is False and passing["reasons"] == []


def test_check_batch_fails_a_held_batch_naming_the_commands():
    from lakehouse.contracts import load_all
    from lakehouse.ingest.quality import QualityError, check_batch

    with pytest.raises(QualityError) as err:
        check_batch(load_all()["network_a"], {"batch_id": "network_a/g1/b2/abc", "status": "held", "rows_in": 10,
                                              "rows_quarantined": 5, "message": "held by the quality gate: x"})
    assert str(err.value).startswith("network_a/g1/b2/abc: held by the quality gate: x\n")
    assert "lakehouse batches release network_a/g1/b2/abc" in str(err.value)
