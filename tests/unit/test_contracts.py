"""Contracts load with clear errors; everything derived from them stays in step."""

import re
from pathlib import Path

import pytest
import yaml

from lakehouse.contracts import CONTRACTS_DIR, ContractError, lint, load_all, load_contract
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


def _props(doc) -> list:
    return doc["schema"][0]["properties"]


def _custom(doc, name):
    return next(c for c in doc["customProperties"] if c["property"] == name)


def _problems(tmp_path, doc, name="network_a") -> str:
    with pytest.raises(ContractError) as err:
        load_contract(_write(tmp_path, doc, name))
    return str(err.value)


def test_bad_range_names_the_path_and_the_fix(tmp_path):
    doc = _doc()
    _props(doc)[2]["logicalTypeOptions"]["maximum"] = -5
    text = _problems(tmp_path, doc)
    assert f"{tmp_path}/network_a.yaml" in text
    assert "schema[0] (network_a).properties[2] (pm25).logicalTypeOptions: minimum 0.0 > maximum -5.0" in text
    assert "docs/contracts.md" in text


def test_not_odcs_names_each_path(tmp_path):
    """The package's JSON Schema decides what is ODCS: a misspelt key, a logicalType ODCS
    lacks, and a float version are each named by their path, with a fix."""
    doc = _doc()
    _props(doc)[0]["requird"] = True
    _props(doc)[3]["logicalType"] = "float"
    doc["version"] = 1.0
    text = _problems(tmp_path, doc)
    assert "schema[0] (network_a).properties[0] (station_code): Unevaluated properties are not allowed " \
           "('requird' was unexpected)" in text
    assert "schema[0] (network_a).properties[3] (pm10).logicalType: 'float' is not one of" in text
    assert "fix: use one of: string, date, timestamp" in text
    assert "version: 1.0 is not of type 'string'" in text


def test_unknown_custom_property_is_refused(tmp_path):
    doc = _doc()
    doc["customProperties"].append({"property": "quarantineLimit", "value": 0.2})
    _props(doc)[2]["customProperties"].append({"property": "units", "value": "ug/m3"})
    text = _problems(tmp_path, doc)
    assert "customProperties[5] (quarantineLimit).property: unknown custom property 'quarantineLimit'" in text
    assert "lakehouse knows endpoint, eventTime, partitioning, schemaDrift, maxQuarantineRate here" in text
    assert "properties[2] (pm25).customProperties[1] (units).property: unknown custom property 'units'" in text


def test_bad_custom_property_value_names_its_key(tmp_path):
    doc = _doc()
    _custom(doc, "endpoint")["value"]["restrat"] = {}
    _custom(doc, "maxQuarantineRate")["value"] = 1.5
    text = _problems(tmp_path, doc)
    assert "customProperties[0] (endpoint).value.restrat: Extra inputs are not permitted" in text
    assert "customProperties[4] (maxQuarantineRate).max_quarantine_rate: Input should be less than or equal to 1" \
        in text


def test_primary_key_must_be_required(tmp_path):
    doc = _doc()
    _props(doc)[2].update(primaryKey=True, primaryKeyPosition=3)
    assert "primary key field 'pm25' must be required" in _problems(tmp_path, doc)


def test_bad_pattern_and_unstored_type(tmp_path):
    doc = _doc()
    _props(doc)[0]["logicalTypeOptions"]["pattern"] = "([unclosed"
    _props(doc)[3]["logicalType"] = "time"
    del _props(doc)[3]["logicalTypeOptions"]
    text = _problems(tmp_path, doc)
    assert "properties[0] (station_code).logicalTypeOptions.pattern: pattern does not compile" in text
    assert "properties[3] (pm10).logicalType: logicalType time is not stored by lakehouse" in text


def test_decimal_beyond_38_digits_is_refused(tmp_path):
    doc = _doc()
    _props(doc)[2]["physicalType"] = "DECIMAL(40,2)"
    text = _problems(tmp_path, doc)
    assert "properties[2] (pm25).physicalType: DECIMAL(40,2): precision 40 overflows the largest decimal " \
           "Iceberg stores (38 digits)" in text


def test_unenforced_rules_are_refused_not_ignored(tmp_path):
    doc = _doc()
    _props(doc)[0]["logicalTypeOptions"]["maxLength"] = 7
    _props(doc)[2]["quality"] = [{"type": "library", "metric": "invalidValues", "mustBe": 0},
                                 {"type": "sql", "query": "select 1", "mustBe": 1}]
    text = _problems(tmp_path, doc)
    assert "properties[0] (station_code).logicalTypeOptions.maxLength: lakehouse does not enforce maxLength" in text
    assert "properties[2] (pm25).quality[0].metric: lakehouse does not check the metric 'invalidValues'" in text
    assert "properties[2] (pm25).quality[1].type: lakehouse does not run sql quality rules" in text


def test_batch_level_rules_are_read_from_odcs_quality(tmp_path):
    doc = _doc()
    doc["schema"][0]["quality"] = [
        {"type": "library", "metric": "rowCount", "mustBeGreaterOrEqualTo": 10},
        {"type": "library", "metric": "duplicateValues", "arguments": {"properties": ["station_code", "timestamp"]},
         "mustBe": 0},
        {"type": "text", "description": "Readings are hourly means."}]
    _props(doc)[2]["quality"] = [{"type": "library", "metric": "nullValues", "unit": "percent",
                                  "mustBeLessThan": 50}]
    _props(doc)[0]["unique"] = True
    rules = load_contract(_write(tmp_path, doc)).rules
    assert [(r.name, r.text()) for r in rules] == [
        ("schema[0] (network_a).quality[0]", "valid rows mustBeGreaterOrEqualTo 10"),
        ("schema[0] (network_a).quality[1]", "repeated values of station_code, timestamp mustBe 0"),
        ("schema[0] (network_a).properties[0] (station_code).unique", "repeated values of station_code mustBe 0"),
        ("schema[0] (network_a).properties[2] (pm25).quality[0]",
         "null values of pm25 (percent of valid rows) mustBeLessThan 50"),
    ]
    doc["schema"][0]["quality"][1]["arguments"]["properties"] = ["nope"]
    assert "quality[1]: names nope, not a field of the contract" in _problems(tmp_path, doc)


def test_event_time_type_must_fit_its_format(tmp_path):
    doc = _doc("network_b")
    _custom(doc, "eventTime")["value"]["format"] = "iso8601_offset"
    assert "eventTime format iso8601_offset needs a string field, and 'ts' is a long" in \
        _problems(tmp_path, doc, "network_b")


def test_not_yaml_and_wrong_file_name(tmp_path):
    bad = tmp_path / "network_a.yaml"
    bad.write_text("id: [unclosed\n")
    with pytest.raises(ContractError, match="not valid YAML"):
        load_contract(bad)
    assert "id: id 'network_a' must equal the file name 'renamed'" in _problems(tmp_path, _doc(), "renamed")


def test_two_contracts_claiming_one_table(tmp_path):
    _write(tmp_path, _doc())
    twin = _doc()
    twin["id"] = "network_a_copy"
    _write(tmp_path, twin, "network_a_copy")
    loaded, errors = lint(tmp_path)
    assert list(loaded) == ["network_a"] and len(errors) == 1
    assert f"contract {tmp_path}/network_a_copy.yaml: schema[0].physicalName 'network_a' is already the " \
           f"table of {tmp_path}/network_a.yaml" in str(errors[0])
    with pytest.raises(ContractError, match="two contracts cannot write one table"):
        load_all(tmp_path)


def test_rich_types_and_no_event_time(tmp_path):
    """Every type lakehouse stores, and a source without event time, partitioned by the
    ingestion day (or by a field)."""
    doc = _forest_like()
    c = load_contract(_write(tmp_path, doc, "forest"))
    types = {f.name: (f.type, f.spark_type) for f in c.fields}
    assert types == {"plot_id": ("integer", "INT"), "elevation": ("long", "BIGINT"),
                     "cover": ("decimal", "DECIMAL(6,3)"), "slope": ("double", "DOUBLE"),
                     "burnt": ("boolean", "BOOLEAN"), "surveyed_on": ("date", "DATE"),
                     "seen_at": ("timestamp", "TIMESTAMP"), "name": ("string", "STRING")}
    assert c.event_time is None and c.partitioning == "day(ingested_at)"
    assert "PARTITIONED BY (days(_ingested_at))" in raw_ddl(c, "lakehouse")
    assert c.field("seen_at").zone == "Europe/Madrid" and c.field("elevation").delivered_as == "string"
    assert c.source.base_url == "http://127.0.0.1:9999/api" and c.source.auth.env == "LAKEHOUSE_SOURCE_FOREST_KEY"
    _props(doc)[0]["partitioned"] = True
    c = load_contract(_write(tmp_path, doc, "forest"))
    assert c.partitioning == "fields" and "PARTITIONED BY (plot_id)" in raw_ddl(c, "lakehouse")


def _forest_like() -> dict:
    def prop(name, logical, physical=None, **kw):
        p = {"name": name, "logicalType": logical, "description": f"{name}."}
        if physical:
            p["physicalType"] = physical
        return {**p, **kw}

    text = [{"property": "deliveredAs", "value": "string"}]
    return {
        "apiVersion": "v3.2.0", "kind": "DataContract", "id": "forest", "name": "Forest plots",
        "version": "1.0.0", "description": {"purpose": "Survey plots."},
        "team": {"name": "forest", "members": [{"username": "forest@lakehouse.example", "role": "owner"}]},
        "customProperties": [{"property": "endpoint", "value": {
            "base_url": "http://127.0.0.1:9999/api/", "path": "/plots", "group_number": 3,
            "auth": {"header": "X-API-Key", "env": "LAKEHOUSE_SOURCE_FOREST_KEY"}}}],
        "schema": [{"name": "forest", "physicalName": "forest", "properties": [
            prop("plot_id", "integer", "INT", required=True, primaryKey=True, customProperties=text),
            prop("elevation", "integer", "BIGINT", customProperties=text),
            prop("cover", "number", "DECIMAL(6,3)", customProperties=text),
            prop("slope", "number", "DOUBLE", logicalTypeOptions={"minimum": 0, "maximum": 90}),
            prop("burnt", "boolean", customProperties=text),
            prop("surveyed_on", "date"),
            prop("seen_at", "timestamp", logicalTypeOptions={"defaultTimezone": "Europe/Madrid"}),
            prop("name", "string"),
        ]}],
    }


def test_raw_schema_is_contract_fields_then_metadata(contracts):
    for c in contracts.values():
        names = [f.name for f in spark_schema(c).fields]
        assert names == c.field_names + [n for n, _, _ in RAW_METADATA]
        ddl = raw_ddl(c, "lakehouse")
        assert f"lakehouse.raw.{c.table}" in ddl and "PARTITIONED BY (days(_event_time))" in ddl
        assert c.version == "1.0.0" and (c.freshness.warn_minutes, c.freshness.error_minutes) == (15, 60)


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
