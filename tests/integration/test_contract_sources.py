"""Sources any real API fits (issue 14), against the real stack: Spark, MinIO, PostgreSQL,
Trino and dbt. The source is a forest-cover-like API of our own on a second base URL: its
rows are arrays of strings, its numbers arrive as text, it has no timestamp, and it wants
an API key. Every assertion is an exact count or value.
"""

from __future__ import annotations

import json
import shutil
from http.server import BaseHTTPRequestHandler

import pytest
import yaml

from lakehouse import dbt
from lakehouse.contracts import CONTRACTS_DIR, ContractError, load_contract
from lakehouse.ingest.fetch import FetchError
from lakehouse.trino import query
from spark_jobs.ingest import Ingestor
from tests.integration.conftest import fresh_group, lakehouse
from tests.local_http import send, serve

pytestmark = [pytest.mark.trino, pytest.mark.spark]
KEY_VAR = "LAKEHOUSE_SOURCE_FOREST_KEY"
KEY = "forest-test-key"
# Elevation, Aspect, Slope, Horizontal_Distance_To_Hydrology, Vertical_Distance_To_Hydrology,
# Horizontal_Distance_To_Roadways, Cover_Type: as the seed project's API served them.
COLUMNS = ("elevation", "aspect", "slope", "horizontal_distance_to_hydrology",
           "vertical_distance_to_hydrology", "horizontal_distance_to_roadways", "cover_type")


def forest_rows(n: int, seed: int) -> list[list[str]]:
    return [[str(2000 + (seed * 31 + i * 7) % 1500), str((i * 13) % 360), str(i % 40), str(i * 3),
             str(i % 50 - 25), str(i * 11), str(1 + i % 7)] for i in range(n)]


class ForestApi(BaseHTTPRequestHandler):
    """GET /v2/forest?group_number=N with the X-API-Key header: the batch published for N."""

    batches: dict[int, tuple[int, list]] = {}

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        path, _, query_string = self.path.partition("?")
        if self.headers.get("X-API-Key") != KEY:
            return self._send(401, b'{"detail": "invalid API key"}')
        if path == "/health":
            return self._send(200, b'{"status": "ok"}')
        group = int(dict(p.split("=") for p in query_string.split("&"))["group_number"])
        if path != "/v2/forest" or group not in ForestApi.batches:
            return self._send(404, b'{"detail": "no such batch"}')
        number, rows = ForestApi.batches[group]
        self._send(200, json.dumps({"group_number": group, "batch_number": number, "data": rows}).encode())

    def _send(self, status: int, body: bytes) -> None:
        send(self, status, body, "application/json")


@pytest.fixture(scope="module")
def forest_api():
    with serve(ForestApi) as url:
        yield url


def forest_contract_doc(base_url: str) -> dict:
    def prop(name, logical, physical, description, **kw):
        return {"name": name, "logicalType": logical, "physicalType": physical, "description": description,
                "customProperties": [{"property": "deliveredAs", "value": "string"}], **kw}

    return {
        "apiVersion": "v3.2.0", "kind": "DataContract", "id": "forest_cover", "name": "Forest cover plots",
        "version": "1.0.0", "status": "active",
        "description": {"purpose": "Cartographic variables of 30 x 30 m forest plots, with their cover type."},
        "team": {"name": "forest", "members": [{"username": "forest@lakehouse.example", "role": "owner"}]},
        "customProperties": [
            {"property": "endpoint", "value": {"base_url": base_url, "path": "/v2/forest",
                                               "auth": {"header": "X-API-Key", "env": KEY_VAR}}},
            {"property": "maxQuarantineRate", "value": 0.5},
        ],
        "schema": [{"name": "forest_cover", "physicalName": "forest_cover", "physicalType": "table",
                    "properties": [
                        prop("elevation", "integer", "INT", "Elevation in meters.", required=True,
                             primaryKey=True, primaryKeyPosition=1, logicalTypeOptions={"minimum": 0}),
                        prop("aspect", "integer", "INT", "Aspect in degrees azimuth.", primaryKey=True,
                             primaryKeyPosition=2, required=True),
                        prop("slope", "integer", "INT", "Slope in degrees."),
                        prop("horizontal_distance_to_hydrology", "integer", "INT", "To water, meters."),
                        prop("vertical_distance_to_hydrology", "integer", "INT", "To water, meters."),
                        prop("horizontal_distance_to_roadways", "integer", "BIGINT", "To a road, meters."),
                        prop("cover_type", "integer", "INT", "Forest cover type, 1 to 7.", required=True,
                             logicalTypeOptions={"minimum": 1, "maximum": 7}),
                    ]}],
    }


@pytest.fixture(scope="module")
def contracts_dir(tmp_path_factory, forest_api):
    """The repository's contracts plus the forest source's, as a user adds one."""
    folder = tmp_path_factory.mktemp("contracts")
    for path in CONTRACTS_DIR.glob("*.yaml"):
        shutil.copy(path, folder / path.name)
    (folder / "forest_cover.yaml").write_text(yaml.safe_dump(forest_contract_doc(forest_api), sort_keys=False))
    return folder


@pytest.fixture
def forest(contracts_dir, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_CONTRACTS_DIR", str(contracts_dir))
    monkeypatch.setenv(KEY_VAR, KEY)
    return load_contract(contracts_dir / "forest_cover.yaml")


def publish(group: int, number: int, rows: list) -> None:
    ForestApi.batches[group] = (number, rows)


def test_forest_source_without_event_time_lands_in_raw_and_its_staging_model(stack, spark, forest, tmp_path):
    """Rows as arrays of strings: integers are converted, a value that is not a number and a
    row of the wrong length are quarantined with their reasons; raw is partitioned by the
    ingestion day; dbt's generated staging model has every raw row."""
    group = fresh_group()
    rows = forest_rows(40, group)
    rows[3][0] = "high"                       # not an integer
    rows[7] = rows[7][:5]                     # five values, the contract has seven
    rows[9][6] = "9"                          # cover type outside [1, 7]
    publish(group, 1, rows)
    ing = Ingestor(stack, forest, spark)
    ing.ensure_tables()
    result = ing.ingest(group)
    assert result.status == "committed", result.message
    assert (result.rows_in, result.rows_valid, result.rows_quarantined) == (40, 37, 3)
    quarantined = dict(query(stack, "SELECT _row_index, reasons FROM quarantine.forest_cover "
                                    f"WHERE _batch_id = '{result.batch_id}'"))
    assert set(quarantined) == {3, 7, 9}
    assert quarantined[3] == ["elevation: 'high' is not an integer (delivered as text; the contract says "
                              "deliveredAs: string)"]
    assert quarantined[7][0].startswith("malformed row: array of 5 values, the contract has 7 fields")
    assert quarantined[9] == ["cover_type: outside [1.0, 7.0] (got 9)"]
    good = [r for i, r in enumerate(rows) if i not in (3, 7, 9)]
    total, elevations, null_event_times = query(
        stack, "SELECT count(*), sum(elevation), count_if(_event_time IS NULL) FROM raw.forest_cover "
               f"WHERE _batch_id = '{result.batch_id}'")[0]
    assert (total, elevations, null_event_times) == (37, sum(int(r[0]) for r in good), 37)
    types = dict(query(stack, "SELECT column_name, data_type FROM information_schema.columns "
                              "WHERE table_schema = 'raw' AND table_name = 'forest_cover'"))
    assert types["elevation"] == "integer" and types["horizontal_distance_to_roadways"] == "bigint"
    (partitioning,) = query(stack, 'SELECT partition FROM raw."forest_cover$partitions" LIMIT 1')[0]
    assert "_ingested_at_day" in str(partitioning) or "_ingested_at" in str(partitioning), partitioning

    # dbt: the contract's generated staging model, in a copy of the project (the repository's
    # stays as it is)
    project = tmp_path / "dbt_project"
    shutil.copytree(dbt.DBT_PROJECT, project, ignore=shutil.ignore_patterns("target", "logs", "generated"))
    dbt.run(stack, ["run", "--select", "stg_forest_cover"], project=project, capture=True)
    assert (project / dbt.GENERATED / "stg_forest_cover.sql").exists()
    staged = query(stack, "SELECT count(*), sum(elevation) FROM staging.stg_forest_cover "
                          f"WHERE _batch_id = '{result.batch_id}'", user="dbt")[0]  # dbt's view: read as dbt
    assert tuple(staged) == (37, elevations)


def test_a_wrong_api_key_is_a_clear_error_naming_the_source(stack, spark, forest, monkeypatch):
    group = fresh_group()
    publish(group, 1, forest_rows(5, group))
    monkeypatch.setenv(KEY_VAR, "not-the-key")
    ing = Ingestor(stack, forest, spark)
    ing.ensure_tables()
    result = ing.ingest(group)
    assert result.status == "failed"
    assert result.message.startswith("forest_cover: GET ") and "answered HTTP 401: the API refused the " \
        "credentials in the X-API-Key header" in result.message, result.message
    written = query(stack, f"SELECT count(*) FROM raw.forest_cover WHERE _group_number = {group}")[0][0]
    assert written == 0


def test_an_unset_auth_variable_fails_before_anything_is_written(stack, spark, forest, monkeypatch, tmp_path):
    monkeypatch.delenv(KEY_VAR)
    monkeypatch.setenv("LAKEHOUSE_ENV_FILE", str(tmp_path / "absent.env"))
    with pytest.raises(FetchError, match=f"forest_cover: .*{KEY_VAR} is not set"):
        Ingestor(stack, forest, spark)


def test_adding_a_field_then_a_breaking_change(stack, spark, forest_api, monkeypatch, tmp_path):
    """An optional field added under 1.1.0 evolves the table in place before the append, and
    the generated staging model has it; removing a field under 1.2.0 is refused with nothing
    changed; under 2.0.0 it is applied. `lakehouse contracts diff` says each of these first."""
    monkeypatch.setenv(KEY_VAR, KEY)
    folder = tmp_path / "contracts"
    folder.mkdir()
    for path in CONTRACTS_DIR.glob("*.yaml"):
        shutil.copy(path, folder / path.name)
    monkeypatch.setenv("LAKEHOUSE_CONTRACTS_DIR", str(folder))
    doc = forest_contract_doc(forest_api)
    doc["id"] = doc["schema"][0]["name"] = doc["schema"][0]["physicalName"] = "forest_evolving"
    path = folder / "forest_evolving.yaml"
    properties = doc["schema"][0]["properties"]

    def ingest(rows):
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        contract = load_contract(path)
        group = fresh_group()
        publish(group, 1, rows)
        ing = Ingestor(stack, contract, spark)
        ing.ensure_tables()
        return ing.ingest(group)

    def columns():
        return dict(query(stack, "SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_schema = 'raw' AND table_name = 'forest_evolving'"))

    first = ingest(forest_rows(10, 1))
    assert (first.status, first.rows_valid) == ("committed", 10)

    # 1.1.0: an optional decimal, delivered as text
    doc["version"] = "1.1.0"
    properties.append({"name": "canopy_height", "logicalType": "number", "physicalType": "DECIMAL(5,1)",
                       "description": "Canopy height in meters.",
                       "customProperties": [{"property": "deliveredAs", "value": "string"}]})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = lakehouse("contracts", "diff", env={"LAKEHOUSE_CONTRACTS_DIR": str(folder)})
    assert "forest_evolving 1.1.0: raw.forest_evolving was shaped by 1.0.0; 1 change(s):\n  add canopy_height: " \
           "a new optional field (DECIMAL(5,1))\n  -> applied in place before the next append" in proc.stdout
    assert "network_a 1.0.0: raw.network_a was shaped by 1.0.0; in step" in proc.stdout
    second = ingest([r + ["12.5"] for r in forest_rows(10, 2)])
    assert (second.status, second.rows_valid, second.rows_quarantined) == ("committed", 10, 0)
    assert columns()["canopy_height"] == "decimal(5,1)"
    counts = query(stack, "SELECT count(*), count(canopy_height), sum(canopy_height), "
                          "count_if(_contract_version = '1.1.0') FROM raw.forest_evolving")[0]
    assert [counts[0], counts[1], float(counts[2]), counts[3]] == [20, 10, 125.0, 10]
    project = tmp_path / "dbt_project"
    shutil.copytree(dbt.DBT_PROJECT, project, ignore=shutil.ignore_patterns("target", "logs", "generated"))
    dbt.run(stack, ["run", "--select", "stg_forest_evolving"], project=project, capture=True)
    staged = query(stack, "SELECT count(*), sum(canopy_height) FROM staging.stg_forest_evolving", user="dbt")[0]
    assert (staged[0], float(staged[1])) == (20, 125.0)

    # 1.2.0: a field removed is breaking: refused, nothing changed or written
    doc["version"] = "1.2.0"
    del properties[2]  # slope
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    proc = lakehouse("contracts", "diff", check=False, env={"LAKEHOUSE_CONTRACTS_DIR": str(folder)})
    assert proc.returncode != 0 and "BREAKING drop slope: a field removed from the contract" in proc.stdout
    assert "the next ingest of forest_evolving would refuse" in proc.stderr
    with pytest.raises(ContractError) as err:
        Ingestor(stack, load_contract(path), spark).ensure_tables()
    assert "breaking change(s) to forest_evolving without a new major version (the table was shaped by 1.1.0, " \
           "the contract is 1.2.0): BREAKING drop slope" in str(err.value)
    assert "slope" in columns()

    # 2.0.0: applied in place; the rows written before keep their count
    doc["version"] = "2.0.0"
    third = ingest([[v for i, v in enumerate(r) if i != 2] + ["3.0"] for r in forest_rows(10, 3)])
    assert (third.status, third.rows_valid) == ("committed", 10), third.message
    assert "slope" not in columns()
    assert tuple(query(stack, "SELECT count(*), count_if(_contract_version = '2.0.0') FROM raw.forest_evolving")[0]) \
        == (30, 10)
