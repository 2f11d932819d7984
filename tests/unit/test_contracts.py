"""Contracts load with clear errors; everything derived from them stays in step."""

import re
from pathlib import Path

import pytest
import yaml

from lakehouse.contracts import CONTRACTS_DIR, ContractError, load_all, load_contract
from lakehouse.contracts.derive import (RAW_METADATA, dbt_sources, expectation_suite, raw_ddl,
                                        spark_schema)


@pytest.fixture(scope="module")
def contracts():
    return load_all()


def _write(tmp_path: Path, doc: dict, name: str = "network_a") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _doc(name="network_a") -> dict:
    return yaml.safe_load((CONTRACTS_DIR / f"{name}.yaml").read_text())


def test_both_networks_load(contracts):
    assert set(contracts) == {"network_a", "network_b"}
    assert contracts["network_a"].event_time.format == "iso8601_offset"
    assert contracts["network_b"].event_time.format == "epoch_ms"


def test_bad_range_names_the_field(tmp_path):
    doc = _doc()
    doc["fields"][2]["maximum"] = -5
    with pytest.raises(ContractError, match=r"fields\[2\] \(pm25\).*minimum 0.0 > maximum -5.0"):
        load_contract(_write(tmp_path, doc))


def test_unknown_key_is_refused(tmp_path):
    doc = _doc()
    doc["fields"][0]["requird"] = True
    with pytest.raises(ContractError, match=r"fields\[0\] \(station_code\)\.requird: Extra inputs"):
        load_contract(_write(tmp_path, doc))


def test_natural_key_must_name_a_required_field(tmp_path):
    doc = _doc()
    doc["natural_key"] = ["station_code", "pm25"]
    with pytest.raises(ContractError, match="natural_key field 'pm25' must be required"):
        load_contract(_write(tmp_path, doc))


def test_bad_pattern_and_bad_type(tmp_path):
    doc = _doc()
    doc["fields"][0]["pattern"] = "([unclosed"
    doc["fields"][3]["type"] = "float"
    with pytest.raises(ContractError) as err:
        load_contract(_write(tmp_path, doc))
    assert "pattern does not compile" in str(err.value) and "fields[3] (pm10).type" in str(err.value)


def test_event_time_type_must_fit_its_format(tmp_path):
    doc = _doc("network_b")
    doc["event_time"]["format"] = "iso8601_offset"
    with pytest.raises(ContractError, match="event_time format iso8601_offset needs a string field"):
        load_contract(_write(tmp_path, doc, "network_b"))


def test_not_yaml_and_wrong_file_name(tmp_path):
    bad = tmp_path / "network_a.yaml"
    bad.write_text("id: [unclosed\n")
    with pytest.raises(ContractError, match="not valid YAML"):
        load_contract(bad)
    with pytest.raises(ContractError, match="must equal the file name"):
        load_contract(_write(tmp_path, _doc(), "renamed"))


def test_raw_schema_is_contract_fields_then_metadata(contracts):
    for c in contracts.values():
        names = [f.name for f in spark_schema(c).fields]
        assert names == c.field_names + [n for n, _, _ in RAW_METADATA]
        ddl = raw_ddl(c, "lakehouse")
        assert f"lakehouse.raw.{c.table}" in ddl and "PARTITIONED BY (days(_event_time))" in ddl


def test_suite_has_one_expectation_per_rule(contracts):
    for c in contracts.values():
        rules = sum(f.required for f in c.fields) + sum(
            f.minimum is not None or f.maximum is not None for f in c.fields) + sum(
            f.pattern is not None for f in c.fields)
        assert len(expectation_suite(c).expectations) == rules


def test_dbt_sources_cover_every_field(contracts):
    doc = dbt_sources(list(contracts.values()), "lakehouse")
    tables = {t["name"]: t for t in doc["sources"][0]["tables"]}
    for c in contracts.values():
        cols = [col["name"] for col in tables[c.table]["columns"]]
        assert cols[: len(c.field_names)] == c.field_names
        required = {col["name"] for col in tables[c.table]["columns"] if "not_null" in col.get("data_tests", [])}
        assert required == {f.name for f in c.fields if f.required}
        assert tables[c.table]["loaded_at_field"] == "_ingested_at"


def test_contracts_document_units_for_every_metric(contracts):
    for c in contracts.values():
        for f in c.fields:
            if f.type == "double":
                assert f.unit and re.search(r"\S", f.description), (c.id, f.name)
