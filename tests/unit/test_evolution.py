"""Schema evolution decisions: a contract against the raw table it deployed."""

from lakehouse.contracts import load_all
from lakehouse.contracts.derive import RAW_METADATA
from lakehouse.contracts.evolution import REQUIRED_PROP, VERSION_PROP, compare, refusal
from lakehouse.contracts.model import FieldSpec

T = "lakehouse.raw.network_b"


def _deployed(contract, **changes):
    """The table as the contract deployed it, changed by `changes` (name -> type, None: absent)."""
    columns = {f.name: f.spark_type for f in contract.fields} | {n: t for n, t, _ in RAW_METADATA}
    for name, typ in changes.items():
        if typ is None:
            columns.pop(name, None)
        else:
            columns[name] = typ
    required = ",".join(f.name for f in contract.fields if f.required)
    return columns, {VERSION_PROP: contract.version, REQUIRED_PROP: required}


def _with(contract, version=None, fields=None):
    return contract.model_copy(update={"version": version or contract.version,
                                       "fields": fields if fields is not None else contract.fields})


def test_in_step_and_additive_changes():
    c = load_all()["network_b"]
    columns, props = _deployed(c)
    assert compare(c, columns, props, T) == []
    extra = FieldSpec(name="pm10", type="double", description="PM10.")
    newer = _with(c, "1.1.0", [*c.fields, extra])
    (change,) = compare(newer, columns, props, T)
    assert (change.kind, change.breaking) == ("add", False)
    assert change.sql.startswith(f"ALTER TABLE {T} ADD COLUMNS (pm10 DOUBLE COMMENT 'PM10.')")
    assert refusal(newer, [change], props) is None
    # a widening Iceberg makes in place
    columns, props = _deployed(c, battery_v="FLOAT")
    (change,) = compare(c, columns, props, T)
    assert (change.kind, change.breaking, change.sql) == ("promote", False,
                                                          f"ALTER TABLE {T} ALTER COLUMN battery_v TYPE DOUBLE")


def test_breaking_changes_need_a_new_major_version():
    c = load_all()["network_b"]
    columns, props = _deployed(c)
    fields = [f for f in c.fields if f.name != "battery_v"]
    fields.append(FieldSpec(name="firmware", type="string", required=True, description="Firmware."))
    fields = [f.model_copy(update={"required": True}) if f.name == "humidity" else f for f in fields]
    minor = _with(c, "1.1.0", fields)
    changes = compare(minor, columns, props, T)
    assert [(ch.kind, ch.field, ch.breaking) for ch in changes] == [
        ("require", "humidity", True), ("add_required", "firmware", True), ("drop", "battery_v", True)]
    why = refusal(minor, changes, props)
    assert why.startswith("breaking change(s) to network_b without a new major version (the table was shaped "
                          "by 1.0.0, the contract is 1.1.0): BREAKING require humidity")
    assert refusal(_with(c, "2.0.0", fields), changes, props) is None
    assert "older than the version 3.0.0" in refusal(minor, changes, {**props, VERSION_PROP: "3.0.0"})


def test_a_narrowed_type_is_refused_even_with_a_new_major_version():
    c = load_all()["network_b"]
    columns, props = _deployed(c, ts="DECIMAL(20,0)")
    changes = compare(_with(c, "2.0.0"), columns, props, T)
    assert [ch.line() for ch in changes] == ["BREAKING retype ts: type changed from DECIMAL(20,0) to BIGINT"]
    why = refusal(_with(c, "2.0.0"), changes, props)
    assert why.startswith("Iceberg cannot make these changes in place") and "under a new name" in why
    narrowed = _deployed(c)[0] | {"ts": "BIGINT"}
    int_contract = _with(c, "2.0.0", [f.model_copy(update={"type": "integer", "minimum": None, "maximum": None})
                                      if f.name == "ts" else f for f in c.fields])
    (change,) = compare(int_contract, narrowed, props, T)
    assert change.detail == "type narrowed from BIGINT to INT" and refusal(int_contract, [change], props)
