"""dbt_project/ checked without a server: generated files are current, the profile holds no
literal connection values, every model states its grain, the seed is a sound registry, and
dbt itself parses the project."""

import csv
import re
from pathlib import Path

import pytest
import yaml

from lakehouse import dbt
from lakehouse.contracts import load_all
from lakehouse.settings import load_settings

PROJECT = dbt.DBT_PROJECT
REGISTRY = PROJECT / "seeds" / "station_registry.csv"


@pytest.fixture(scope="module")
def settings():
    return load_settings()


def test_sources_file_is_the_one_generated_from_the_contracts(settings):
    assert dbt.SOURCES_FILE.read_text() == dbt.sources_text(settings), \
        "run `lakehouse contracts dbt-sources -o dbt_project/models/staging/_sources.yml`"


def test_sources_cover_raw_quarantine_and_audit(settings):
    doc = yaml.safe_load(dbt.sources_text(settings))
    tables = {(s["name"], t["name"]) for s in doc["sources"] for t in s["tables"]}
    for c in load_all().values():
        assert ("raw", c.table) in tables and ("quarantine", c.table) in tables
    assert ("audit", "ingestion_log") in tables


def _leaves(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    else:
        yield path, node


def test_profile_takes_every_connection_value_from_env_var():
    profile = yaml.safe_load((PROJECT / "profiles.yml").read_text())["lakehouse"]
    assert set(profile["outputs"]) == set(dbt.TARGETS)
    assert "env_var(" in profile["target"]
    for name, output in profile["outputs"].items():
        for key in ("host", "port", "database", "threads", "cert"):
            assert "env_var(" in str(output[key]), (name, key)
        # Trino's user names are fixed (conf/trino/rules.json grants by name); the password
        # is the generated one, read from the env, over HTTPS only.
        assert output["user"] == "dbt" and output["method"] == "ldap" and output["http_scheme"] == "https"
        assert output["password"] == "{{ env_var('LAKEHOUSE_TRINO_DBT_PASSWORD') }}"
        for path, value in _leaves(output):
            if "password" in path[-1] or "secret" in str(path[-1]):
                assert str(value).startswith("{{ env_var('LAKEHOUSE_"), (name, path)


def test_every_model_has_a_yml_that_states_its_grain():
    models = sorted((PROJECT / "models").rglob("*.sql"))
    assert len(models) >= 8
    for sql in models:
        yml = sql.with_suffix(".yml")
        assert yml.exists(), f"{sql.relative_to(PROJECT)} has no {yml.name}"
        doc = yaml.safe_load(yml.read_text())
        entry = next(m for m in doc["models"] if m["name"] == sql.stem)
        assert "Grain:" in entry["description"], sql.stem


def test_model_names_follow_the_layer_conventions():
    for sql in (PROJECT / "models").rglob("*.sql"):
        layer, name = sql.parent.name, sql.stem
        pattern = {"staging": r"^stg_[a-z0-9_]+__[a-z_]+s$", "intermediate": r"^int_[a-z_]+s_[a-z]+$",
                   "marts": r"^(fct|dim|mart)_[a-z_]+$"}[layer]
        assert re.match(pattern, name), (layer, name)


def test_station_registry_is_a_sound_catalog():
    with open(REGISTRY, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    contracts = load_all()
    patterns = {"network-a": next(f.pattern for f in contracts["network_a"].fields if f.name == "station_code"),
                "network-b": next(f.pattern for f in contracts["network_b"].fields if f.name == "device_id")}
    keys = [(r["network"], r["source_code"]) for r in rows]
    assert len(keys) == len(set(keys))
    for r in rows:
        assert re.match(patterns[r["network"]], r["source_code"]), r
        assert re.fullmatch(r"\d{2}", r["state_code"]) and re.fullmatch(r"\d{3}", r["municipality_code"]), r
        assert r["station_id"] == f"st-{r['state_code']}{r['municipality_code']}-{r['station_id'][-2:]}", r
    # a canonical station lies in one state and municipality, whichever network reports it
    places = {}
    for r in rows:
        places.setdefault(r["station_id"], set()).add((r["state_code"], r["municipality_code"]))
    assert all(len(p) == 1 for p in places.values())


def test_thresholds_are_documented_vars():
    project = (PROJECT / "dbt_project.yml").read_text()
    thresholds = yaml.safe_load(project)["vars"]["aq_thresholds"]
    assert thresholds == {"pm25": 15.0, "pm10": 45.0, "no2": 13.3, "o3": 51.0}
    assert "WHO global air quality guidelines, 2021" in project


def test_dbt_parses_the_project(settings, tmp_path: Path):
    proc = dbt.run(settings, ["parse", "--target-path", str(tmp_path)], capture=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = (tmp_path / "manifest.json").read_text()
    for model in ("stg_network_a__observations", "fct_observations", "mart_data_quality"):
        assert f"model.lakehouse.{model}" in manifest
