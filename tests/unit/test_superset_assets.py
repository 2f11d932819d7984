"""superset_assets/ without a server: links, templates, secrets, and the checks the import runs."""

import json
import re

import pytest
import yaml

from lakehouse.superset import assets

FILES = assets.asset_files()
PARSED = assets.parse(FILES)


def test_the_layout_is_superset_exports_and_everything_links_by_uuid():
    assert yaml.safe_load(FILES["metadata.yaml"])["version"] == "1.0.0"
    for name in FILES:
        assert name == "metadata.yaml" or name.split("/")[0] in assets.KINDS, name
    assert assets.check_links(PARSED) == []
    uuids = [d["uuid"] for n, d in PARSED.items() if n != "metadata.yaml"]
    assert len(uuids) == len(set(uuids))


def test_two_dashboards_with_the_charts_and_filters_the_platform_promises():
    boards = {d["dashboard_title"]: d for d in assets.dashboards()}
    assert set(boards) == {"Air quality overview", "Data quality"}
    filters = {b: {f["name"]: f["filterType"] for f in d["metadata"]["native_filter_configuration"]}
               for b, d in boards.items()}
    assert filters["Air quality overview"] == {"State": "filter_select", "Station": "filter_select",
                                               "Metric": "filter_select", "Date range": "filter_time"}
    for d in boards.values():
        assert d["published"] is True  # the viewer sees published dashboards only


def test_a_dangling_chart_reference_is_named():
    broken = json.loads(json.dumps(PARSED))
    chart = next(n for n in broken if n.startswith("charts/"))
    broken[chart]["dataset_uuid"] = "00000000-0000-0000-0000-000000000000"
    assert assets.check_links(broken) == [f"{chart}: dataset_uuid 00000000-0000-0000-0000-000000000000 is not in datasets/"]


def test_the_database_is_a_template_with_no_secret_and_renders_from_settings(settings):
    db = FILES["databases/lakehouse_trino.yaml"]
    assert "XXXXXXXXXX" in db  # Superset's own mask; the import passes the password beside it
    rendered = assets.render(FILES, settings)["databases/lakehouse_trino.yaml"]
    assert "${" not in rendered
    doc = yaml.safe_load(rendered)
    assert doc["sqlalchemy_uri"] == (f"trino://superset:XXXXXXXXXX@{settings.trino_address}:"
                                     f"{settings.trino_https_port}/{settings.catalog_name}")
    assert doc["extra"]["engine_params"]["connect_args"] == {"http_scheme": "https",
                                                              "verify": str(settings.trino_ca_file)}
    secrets = [getattr(settings, f).get_secret_value() for f in type(settings).model_fields
               if hasattr(getattr(settings, f), "get_secret_value")]
    for name, text in assets.render(FILES, settings).items():
        assert not any(s in text for s in secrets), name


def test_an_unknown_placeholder_is_an_error(settings):
    files = dict(FILES)
    files["databases/lakehouse_trino.yaml"] += "\n# ${LAKEHOUSE_NO_SUCH_THING}\n"
    with pytest.raises(assets.AssetError, match="unknown placeholder 'LAKEHOUSE_NO_SUCH_THING'"):
        assets.render(files, settings)


def test_dataset_checks_name_the_missing_table_and_columns():
    tables = {("marts", "fct_observations_hourly"): ["station_id", "metric"]}
    problems = assets.check_datasets(PARSED, lambda s, t: tables.get((s, t)))
    assert "datasets/lakehouse_trino/dim_stations.yaml: table marts.dim_stations does not exist in Trino " \
           "(or the `superset` user may not read it)" in problems
    hourly = next(p for p in problems if p.startswith("datasets/lakehouse_trino/fct_observations_hourly.yaml"))
    assert "has no column(s) unit, hour_utc" in hourly


def test_datasets_are_the_marts_with_documented_grain():
    datasets = {d["table_name"]: d for n, d in PARSED.items() if n.startswith("datasets/")}
    assert set(datasets) == {"dim_stations", "fct_daily_state_indicators", "fct_observations",
                             "fct_observations_hourly", "mart_data_quality", "mart_quarantine_reasons"}
    for table, d in datasets.items():
        assert d["schema"] == "marts" and "Grain" in d["description"], table
        assert d["uuid"] == assets.dataset_uuid("marts", table)
    for name, chart in PARSED.items():
        if name.startswith("charts/"):
            ds = next(d for d in datasets.values() if d["uuid"] == chart["dataset_uuid"])
            cols = {c["column_name"] for c in ds["columns"]}
            used = set(chart["params"].get("groupby", [])) | set(chart["params"].get("all_columns", []))
            assert used <= cols, (name, used - cols)


def test_normalize_drops_instance_ids_only():
    name = "dashboards/air_quality_overview.yaml"
    a = PARSED[name]
    b = json.loads(json.dumps(a))
    for node in b["position"].values():
        if isinstance(node, dict) and node.get("type") == "CHART":
            node["meta"]["chartId"] += 100
    for f in b["metadata"]["native_filter_configuration"]:
        f["scope"]["excluded"] = [i + 100 for i in f["scope"]["excluded"]]
    assert assets.normalize(name, a) == assets.normalize(name, b)
    b["dashboard_title"] = "Other"
    assert assets.normalize(name, a) != assets.normalize(name, b)


def test_no_password_in_any_asset_file():
    for name, text in FILES.items():
        assert not re.search(r"password\s*:", text, re.I), name
