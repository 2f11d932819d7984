"""The cycle decision (lakehouse.ingest.cycles): every step of the rule, and the canonical
payload checksum it compares."""

import orjson
import pytest

from lakehouse.ingest.cycles import Delivered, batch_key, decide
from lakehouse.ingest.fetch import PayloadError, parse_envelope

N = 10


def delivered(*pairs, checksum="x"):
    """Committed (cycle, batch) pairs, each with its own payload checksum `<checksum><c>.<b>`."""
    return [Delivered(c, b, f"s/g1/c{c}/b{b}/{checksum}{c}.{b}", f"{checksum}{c}.{b}", f"raw{c}.{b}")
            for c, b in pairs]


def test_first_batch_ever_is_cycle_1_and_earlier_numbers_were_missed():
    d = decide([], 1, "p", "r", N)
    assert (d.action, d.cycle, d.missed, d.cycle_source) == ("ingest", 1, (), "inferred")
    assert decide([], 4, "p", "r", N).missed == (1, 2, 3)


def test_next_batch_continues_the_cycle_and_a_jump_records_the_gap():
    history = delivered((1, 1), (1, 2))
    assert (decide(history, 3, "p", "r", N).action, decide(history, 3, "p", "r", N).cycle) == ("ingest", 1)
    jump = decide(history, 6, "p", "r", N)
    assert (jump.action, jump.cycle, jump.missed) == ("ingest", 1, (3, 4, 5))


def test_the_same_payload_again_is_a_replay_in_any_cycle():
    history = delivered((1, 1), (1, 2), (2, 1))
    again = decide(history, 2, "x1.2", "other-bytes", N)  # re-serialised: same canonical checksum
    assert (again.action, again.cycle, again.replay_of.batch_id) == ("replayed", 1, "s/g1/c1/b2/x1.2")
    head = decide(history, 1, "x2.1", "raw2.1", N)
    assert (head.action, head.cycle) == ("replayed", 2)


def test_batches_ingested_before_cycles_match_on_the_raw_checksum():
    legacy = [Delivered(1, 3, "s/g1/b3/abc", None, "rawbytes")]
    assert decide(legacy, 3, "canonical", "rawbytes", N).action == "replayed"
    assert decide(legacy, 3, "canonical", "other", N).action == "rejected"
    # known from an old snapshot only (no checksum property): its id ends with the raw checksum
    old = [Delivered(1, 3, "s/g1/b3/0123456789abcdef", None, None)]
    assert decide(old, 3, "canonical", "0123456789abcdef" + "9" * 48, N).action == "replayed"
    assert decide(old, 3, "canonical", "f" * 64, N).action == "rejected"


def test_a_lower_number_opens_the_next_cycle():
    d = decide(delivered((1, 1), (1, 2), (1, 3)), 1, "new", "r", N)
    assert (d.action, d.cycle, d.missed) == ("ingest", 2, ())
    assert "batch 1 after batch 3: the API started cycle 2" in d.reason
    late = decide(delivered((1, 1), (1, 2), (1, 3)), 2, "new", "r", N)
    assert (late.cycle, late.missed) == (2, (1,))


def test_the_last_batch_again_with_new_data_opens_the_next_cycle():
    history = delivered(*((1, b) for b in range(1, N + 1)))
    d = decide(history, N, "new", "r", N)
    assert (d.action, d.cycle, d.missed) == ("ingest", 2, tuple(range(1, N)))


def test_a_changed_payload_within_the_cycle_is_rejected_and_names_the_other():
    d = decide(delivered((1, 1), (1, 2)), 2, "changed", "r", N)
    assert (d.action, d.cycle) == ("rejected", 1)
    assert "batch 2 of cycle 1 was already ingested with another payload" in d.reason
    assert d.conflicts == ("s/g1/c1/b2/x1.2",)


@pytest.mark.parametrize("number", [0, -3, N + 1])
def test_a_batch_number_outside_the_cycle_is_rejected(number):
    d = decide(delivered((1, 1)), number, "p", "r", N)
    assert d.action == "rejected" and f"batch_number {number} is outside the cycle's 1..{N}" in d.reason


def test_a_declared_cycle_decides_and_still_catches_changed_payloads():
    history = delivered((1, 1), (1, 2))
    new_cycle = decide(history, 1, "p", "r", N, declared=2)
    assert (new_cycle.action, new_cycle.cycle, new_cycle.cycle_source) == ("ingest", 2, "declared")
    assert decide(history, 2, "x1.2", "r", N, declared=1).action == "replayed"
    changed = decide(history, 2, "changed", "r", N, declared=1)
    assert (changed.action, changed.cycle_source) == ("rejected", "declared")
    # a declared cycle removes inference's ambiguity: batch 2 again in cycle 2 is new data
    assert decide(history, 2, "changed", "r", N, declared=2).missed == (1,)
    back = decide(delivered((3, 1)), 1, "p", "r", N, declared=2)
    assert back.action == "ingest" and "the API went back" in back.reason


def test_batch_keys_keep_cycle_1_as_it_was():
    assert batch_key("network_a", 5, 1, 3) == "network_a/g5/b3"
    assert batch_key("network_a", 5, None, 3) == "network_a/g5/b3"
    assert batch_key("network_a", 5, 2, 3) == "network_a/g5/c2/b3"


def test_the_payload_checksum_ignores_key_order_whitespace_and_escapes_but_not_data():
    a = parse_envelope(b'{"group_number":1,"batch_number":2,"data":[{"x":1.5,"s":"A"}]}', source="s", group=1)
    b = parse_envelope(b'{ "data" : [ { "s" : "\\u0041", "x" : 15e-1 } ],\n "batch_number": 2, "group_number": 1}',
                       source="s", group=1)
    c = parse_envelope(b'{"group_number":1,"batch_number":2,"data":[{"x":1.6,"s":"A"}]}', source="s", group=1)
    assert a.payload_checksum == b.payload_checksum != c.payload_checksum
    # the envelope's numbers are the key, not the payload
    d = parse_envelope(orjson.dumps({"group_number": 1, "batch_number": 3, "data": [{"x": 1.5, "s": "A"}]}),
                       source="s", group=1)
    assert d.payload_checksum == a.payload_checksum


def test_a_declared_cycle_field_must_be_a_positive_integer():
    ok = parse_envelope(b'{"group_number":1,"batch_number":2,"cycle":3,"data":[1]}', source="s", group=1,
                        cycle_field="cycle")
    assert ok.declared_cycle == 3
    with pytest.raises(PayloadError, match=r"s group 1 batch 2: the cycle in field 'cycle' is 'x'"):
        parse_envelope(b'{"group_number":1,"batch_number":2,"cycle":"x","data":[1]}', source="s", group=1,
                       cycle_field="cycle")
