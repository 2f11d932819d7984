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
