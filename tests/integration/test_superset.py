"""Superset on the real stack: assets imported from superset_assets/, chart data checked
against the same SQL run directly on Trino, users and grants, bad input, and Trino down.

The marts are the session's warehouse (`make demo`'s cycle); the assets are imported with
`lakehouse superset import`, the command `make superset-import` runs (the `marts`
fixture). Browser rendering is in test_superset_browser.py.
"""

import copy
import json
import math
import re
import shutil
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
import requests
import sqlparse
import trino as trino_client
import yaml

from lakehouse.stack import provision, supervisor
from lakehouse.superset import assets
from lakehouse.superset.client import SupersetClient
from lakehouse.trino import connect, query
from tests.integration.conftest import lakehouse

pytestmark = pytest.mark.superset
CHARTS = sorted(n for n in assets.asset_files() if n.startswith("charts/"))


def _repo_uuids(kind: str) -> set[str]:
    return {yaml.safe_load(t)["uuid"] for n, t in assets.asset_files().items() if n.startswith(kind + "/")}


def _held(client: SupersetClient) -> dict[str, list[str]]:
    """UUIDs of what Superset holds, read through its export (the API lists no UUIDs)."""
    files = assets.unbundle(client.export_assets())
    out: dict[str, list[str]] = {k: [] for k in assets.KINDS}
    for name, text in files.items():
        kind = name.split("/", 1)[0]
        if kind in out:
            out[kind].append(yaml.safe_load(text)["uuid"])
    return out


def login_csrf_token(html: str) -> str:
    m = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html, re.S)
    assert m, "no csrf_token in Superset's login page"
    return m.group(1)


# ---- the runtime ---------------------------------------------------------------------------

def test_superset_runs_from_its_own_venv_with_metadata_in_postgres(marts, admin):
    from lakehouse.stack.services import superset as runtime

    assert requests.get(f"{marts.superset_url}/health", timeout=10).text == "OK"
    venv = runtime.venv_path(marts)
    assert venv.is_relative_to(marts.cache_path)
    sqlalchemy = list((venv / "lib" / "python3.11" / "site-packages").glob("SQLAlchemy-*.dist-info")) + \
        list((venv / "lib" / "python3.11" / "site-packages").glob("sqlalchemy-*.dist-info"))
    assert sqlalchemy and all(p.name.split("-")[1].startswith("1.4") for p in sqlalchemy), sqlalchemy
    with provision.pg_connect(marts, marts.superset_db, marts.superset_db_user,
                              marts.superset_db_password.get_secret_value()) as conn:
        users = {r[0] for r in conn.execute("SELECT username FROM ab_user")}
        assert {marts.superset_admin_user, marts.superset_viewer_user} <= users
        assert conn.execute("SELECT count(*) FROM dashboards").fetchone()[0] == 2
    # no example data: the only database is ours
    assert [d["database_name"] for d in admin.list_all("database", ["database_name"])] \
        == ["Lakehouse marts (Trino)"]


# ---- import, export --------------------------------------------------------------------------

def test_import_is_idempotent(marts, admin):
    before = _held(admin)
    lakehouse("superset", "import")
    lakehouse("superset", "import")
    after = _held(admin)
    for kind in assets.KINDS:
        assert sorted(after[kind]) == sorted(before[kind]), kind
        assert len(after[kind]) == len(set(after[kind])), f"duplicate {kind}"
        assert set(after[kind]) == _repo_uuids(kind), kind


def test_export_then_import_round_trips_to_the_same_assets(marts, admin, tmp_path):
    repo = assets.asset_files()
    lakehouse("superset", "export", "--to", str(tmp_path / "first"))
    first = assets.asset_files(tmp_path / "first")
    assert set(first) == set(repo)
    for name in repo:
        assert assets.normalize(name, yaml.safe_load(first[name])) == assets.normalize(name, yaml.safe_load(repo[name])), name
    # the exported folder imports as well, and exports again to the same thing
    lakehouse("superset", "import", "--assets", str(tmp_path / "first"))
    lakehouse("superset", "export", "--to", str(tmp_path / "second"))
    second = assets.asset_files(tmp_path / "second")
    for name in repo:
        assert assets.normalize(name, yaml.safe_load(second[name])) == assets.normalize(name, yaml.safe_load(first[name])), name


def test_datasets_match_dbt_and_trino(marts):
    lakehouse("dbt", "docs", "generate", timeout=900)
    proc = lakehouse("superset", "datasets", "--check", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    parsed = assets.parse(assets.render(assets.asset_files(), marts))
    assert assets.check_datasets(parsed, assets.trino_columns(marts)) == []


# ---- chart data equals Trino ---------------------------------------------------------------

def _saved_query_context(client: SupersetClient, chart_file: str) -> dict:
    doc = yaml.safe_load(assets.asset_files()[chart_file])
    charts = client.list_all("chart", ["id", "slice_name"])
    chart_id = next(c["id"] for c in charts if c["slice_name"] == doc["slice_name"])
    saved = client.get(f"/api/v1/chart/{chart_id}")["result"]
    return json.loads(saved["query_context"])


def _value(v):
    """One cell, as Superset's JSON carries it: temporal values as epoch milliseconds.

    Numbers compare to 12 significant digits: Superset's JSON has the float, Trino's client
    a Decimal or a datetime with microseconds.
    """
    if isinstance(v, datetime):
        v = (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).timestamp() * 1000
    elif isinstance(v, date):
        v = datetime(v.year, v.month, v.day, tzinfo=timezone.utc).timestamp() * 1000
    if isinstance(v, (Decimal, float)) and not isinstance(v, bool):
        v = float(v)
        return None if math.isnan(v) else float(f"{v:.12g}")
    return v


def _rows(columns, records) -> list[tuple]:
    return sorted((tuple(_value(r[c]) for c in columns) for r in records), key=repr)


def _chart_vs_trino(client: SupersetClient, settings, qc: dict):
    """The chart's rows through Superset, and the SQL Superset ran, run directly on Trino."""
    qc = copy.deepcopy(qc)
    qc["force"] = True
    for q in qc["queries"]:
        q["post_processing"] = []  # compare the query's rows; pivoting is presentation
    body = client.chart_data({**qc, "result_type": "full"}).json()["result"][0]
    text = client.chart_data({**qc, "result_type": "query"}).json()["result"][0]["query"]
    statements = [st.strip().rstrip(";") for st in sqlparse.split(text) if st.strip()]
    assert len(statements) == 1, text
    sql = statements[0]
    conn = connect(settings, user="superset")
    try:
        cur = conn.cursor()
        cur.execute(sql)
        rows = cur.fetchall()
        names = [d[0] for d in cur.description]
    finally:
        conn.close()
    superset_rows = _rows(body["colnames"], body["data"])
    trino_rows = sorted((tuple(_value(v) for v in r) for r in rows), key=repr)
    return body, names, superset_rows, trino_rows


@pytest.mark.parametrize("chart_file", CHARTS)
def test_chart_data_equals_the_same_query_on_trino(marts, admin, chart_file):
    qc = _saved_query_context(admin, chart_file)
    body, names, via_superset, direct = _chart_vs_trino(admin, marts, qc)
    if via_superset != direct:  # a minute boundary passed between the two (freshness charts)
        body, names, via_superset, direct = _chart_vs_trino(admin, marts, qc)
    assert body["rowcount"] > 0, f"{chart_file}: no rows, so nothing was compared"
    assert names == body["colnames"]
    assert via_superset == direct


def test_chart_numbers_equal_independent_sql(marts, admin):
    """Beyond Superset's own SQL: totals computed by hand on the marts."""
    qc = _saved_query_context(admin, "charts/dq_rows.yaml")
    qc["queries"][0]["post_processing"] = []
    data = admin.chart_data(qc).json()["result"][0]["data"]
    (valid, quarantined), = query(marts, "SELECT sum(rows_valid), sum(rows_quarantined) FROM marts.mart_data_quality")
    assert sum(r["rows valid"] for r in data) == valid
    assert sum(r["rows quarantined"] for r in data) == quarantined
    qc = _saved_query_context(admin, "charts/aq_by_state.yaml")
    data = admin.chart_data(qc).json()["result"][0]["data"]
    (n,), = query(marts, "SELECT sum(n_observations) FROM marts.fct_observations_hourly WHERE state_name IS NOT NULL")
    assert sum(r["observations"] for r in data if r["state_name"] is not None) == n


# ---- users and grants ------------------------------------------------------------------------

def test_viewer_can_view_dashboards_but_not_edit_them_or_open_sql_lab(marts, admin, viewer):
    dashboards = viewer.list_all("dashboard", ["id", "dashboard_title"])
    assert {d["dashboard_title"] for d in dashboards} == {"Air quality overview", "Data quality"}
    qc = _saved_query_context(admin, "charts/aq_latest.yaml")
    assert viewer.chart_data(qc).json()["result"][0]["rowcount"] > 0
    did = dashboards[0]["id"]
    resp = viewer.request("PUT", f"/api/v1/dashboard/{did}", json={"dashboard_title": "hacked"}, expect=(401, 403))
    assert resp.status_code == 403
    chart_id = viewer.list_all("chart", ["id"])[0]["id"]
    assert viewer.request("DELETE", f"/api/v1/chart/{chart_id}", expect=(401, 403, 404)).status_code in (403, 404)
    db_id = admin.list_all("database", ["id"])[0]["id"]
    resp = viewer.request("POST", "/api/v1/sqllab/execute/", expect=(401, 403),
                          json={"database_id": db_id, "sql": "SELECT 1", "schema": "marts"})
    assert resp.status_code in (401, 403)
    # the SQL Lab page itself: a viewer's browser session is sent away from it
    page = requests.Session()
    page.trust_env = False
    login = page.get(f"{marts.superset_url}/login/", timeout=30)
    token = login_csrf_token(login.text)
    page.post(f"{marts.superset_url}/login/", timeout=30, data={
        "csrf_token": token, "username": marts.superset_viewer_user,
        "password": marts.superset_viewer_password.get_secret_value()})
    lab = page.get(f"{marts.superset_url}/sqllab/", timeout=30, allow_redirects=False)
    assert lab.status_code in (302, 403), lab.status_code
    assert admin.get(f"/api/v1/dashboard/{did}")["result"]["dashboard_title"] != "hacked"


@pytest.mark.parametrize("method,path", [("GET", "/api/v1/dashboard/"), ("GET", "/api/v1/chart/"),
                                         ("GET", "/api/v1/database/"), ("POST", "/api/v1/chart/data"),
                                         ("GET", "/api/v1/assets/export/")])
def test_unauthenticated_api_calls_are_refused(marts, method, path):
    resp = requests.request(method, f"{marts.superset_url}{path}", json={} if method == "POST" else None,
                            timeout=30, allow_redirects=False)
    assert resp.status_code in (401, 403), (path, resp.status_code, resp.text[:200])


@pytest.mark.parametrize("sql", [
    "SELECT count(*) FROM raw.network_a",
    "SELECT count(*) FROM quarantine.network_b",
    "SELECT count(*) FROM audit.ingestion_log",
    "SELECT count(*) FROM staging.stg_network_a__observations",
    "CREATE TABLE marts.superset_was_here (a integer)",
    "INSERT INTO marts.dim_stations (station_id) VALUES ('x')",
    "DELETE FROM marts.fct_observations WHERE false",
    "DROP TABLE marts.dim_stations",
])
def test_trino_user_superset_reads_only_the_marts(marts, sql):
    with pytest.raises(trino_client.exceptions.TrinoUserError, match="Access Denied"):
        query(marts, sql, user="superset")
    assert query(marts, "SELECT count(*) FROM marts.dim_stations", user="superset")[0][0] > 0


def test_trino_refuses_wrong_passwords_and_plain_http(marts):
    with pytest.raises(trino_client.exceptions.HttpError, match="401"):
        conn = connect(marts, user="superset", password="not-the-password")
        conn.cursor().execute("SELECT 1")
    resp = requests.post(f"{marts.trino_internal_url}/v1/statement", data="SELECT 1", timeout=10,
                         headers={"X-Trino-User": "lakehouse"})
    assert resp.status_code == 403 and "Authentication over HTTP is not enabled" in resp.text
    resp = requests.post(f"{marts.trino_url}/v1/statement", data="SELECT 1", timeout=10,
                         headers={"X-Trino-User": "lakehouse"}, verify=str(marts.trino_ca_file))
    assert resp.status_code == 401


# ---- bad input -------------------------------------------------------------------------------

def _assets_copy(tmp_path):
    dest = tmp_path / "assets"
    shutil.copytree(assets.ASSETS, dest)
    return dest


def test_a_dataset_on_a_missing_table_fails_the_import_and_names_it(marts, tmp_path):
    root = _assets_copy(tmp_path)
    path = root / "datasets" / "lakehouse_trino" / "dim_stations.yaml"
    path.write_text(path.read_text().replace("table_name: dim_stations", "table_name: dim_stations_gone"))
    proc = lakehouse("superset", "import", "--assets", str(root), check=False)
    assert proc.returncode != 0
    assert "datasets/lakehouse_trino/dim_stations.yaml: table marts.dim_stations_gone does not exist" in proc.stderr
    assert "nothing was imported" in proc.stderr


def test_a_dataset_naming_a_missing_column_fails_the_import(marts, tmp_path):
    root = _assets_copy(tmp_path)
    path = root / "datasets" / "lakehouse_trino" / "fct_observations_hourly.yaml"
    path.write_text(path.read_text().replace("column_name: value_avg", "column_name: value_mean"))
    proc = lakehouse("superset", "import", "--assets", str(root), check=False)
    assert proc.returncode != 0
    assert "fct_observations_hourly has no column(s) value_mean" in proc.stderr


@pytest.mark.parametrize("value", ["x' OR '1'='1", "Jalisco'; DROP TABLE marts.dim_stations; --",
                                   "') OR 1=1 --", "\\' OR 1=1 --"])
def test_sql_injection_through_a_native_filter_value_returns_nothing(marts, admin, value):
    qc = _saved_query_context(admin, "charts/aq_latest.yaml")
    qc["force"] = True
    # what a native filter on State sends: an IN filter on the chart's query
    qc["queries"][0]["filters"].append({"col": "state_name", "op": "IN", "val": [value]})
    resp = admin.chart_data(qc, expect=(200, 400))
    assert resp.status_code == 200, resp.text[:300]
    assert resp.json()["result"][0]["rowcount"] == 0
    assert query(marts, "SELECT count(*) FROM marts.dim_stations")[0][0] > 0


def test_with_trino_down_charts_fail_cleanly_and_superset_stays_up(marts, admin):
    rpc = supervisor.client(marts)
    qc = _saved_query_context(admin, "charts/dq_freshness_by_source.yaml")
    qc["force"] = True
    rpc.supervisor.stopProcess("trino", True)
    try:
        # Superset reports a failed query as the client's error to show (HTTP 400 with the
        # database's message: ChartDataQueryFailedError), never a 5xx or a traceback
        resp = admin.chart_data(qc, expect=(400, 500, 502, 503))
        assert resp.status_code == 400, (resp.status_code, resp.text[:500])
        message = json.dumps(resp.json())
        assert "trino" in message.lower() or "connect" in message.lower(), message[:500]
        assert requests.get(f"{marts.superset_url}/health", timeout=10).text == "OK"
        assert admin.list_all("dashboard", ["id"])  # the UI's own API still answers
    finally:
        lakehouse("up", timeout=600)
    assert admin.chart_data(qc).json()["result"][0]["rowcount"] > 0


def test_login_is_rate_limited_and_lets_the_user_back_in_after_a_minute(marts):
    """Password guessing meets HTTP 429, through the API and through the login form; the
    right password works again once the window has passed. (Last in the module: it blocks
    logins from this address for a minute.)"""
    import time

    url = f"{marts.superset_url}/api/v1/security/login"
    codes = [requests.post(url, timeout=30, json={"username": marts.superset_admin_user, "password": f"guess-{i}",
                                                  "provider": "db", "refresh": False}).status_code
             for i in range(30)]
    assert set(codes) <= {401, 429} and codes[0] == 401, codes
    assert codes.count(429) >= 10, codes  # 10 a minute per gunicorn worker: at most 20 get through
    form = requests.Session()
    token = login_csrf_token(form.get(f"{marts.superset_url}/login/", timeout=30).text)
    form_codes = [form.post(f"{marts.superset_url}/login/", timeout=30, allow_redirects=False, data={
        "csrf_token": token, "username": marts.superset_admin_user, "password": f"guess-{i}"}).status_code
        for i in range(30)]
    assert form_codes.count(429) >= 10, form_codes
    good = {"username": marts.superset_admin_user, "password": marts.superset_admin_password.get_secret_value(),
            "provider": "db", "refresh": False}
    deadline = time.monotonic() + 90
    while True:
        code = requests.post(url, timeout=30, json=good).status_code
        if code == 200:
            break
        assert code == 429 and time.monotonic() < deadline, code
        time.sleep(5)
