"""Superset assets as code: superset_assets/ <-> a running Superset.

Scope: reads superset_assets/ (preset-cli's layout: databases/, datasets/<db>/, charts/,
dashboards/, metadata.yaml, linked by UUID), renders the database file from the settings,
checks every dataset against the real mart in Trino, and imports the bundle through
Superset's API. `export` writes what Superset holds back in the same layout. Datasets are
generated from dbt's manifest and catalog (`generate_datasets`).
"""

from __future__ import annotations

import io
import re
import string
import uuid
import zipfile
from pathlib import Path
from typing import Callable

import yaml

from lakehouse.errors import LakehouseError
from lakehouse.settings import REPO_ROOT, Settings

ASSETS = REPO_ROOT / "superset_assets"
BUNDLE_ROOT = "lakehouse_assets"
KINDS = ("databases", "datasets", "charts", "dashboards")
# The database's connection: its URI and TLS settings come from the env file at import.
TEMPLATED = re.compile(r"^databases/[^/]+\.yaml$")
UUID_NAMESPACE = uuid.UUID("5b0c4c42-7f6e-4c52-9a39-3c1f2d7a9e10")


class AssetError(LakehouseError):
    """An asset file is wrong, or does not match the warehouse it describes."""


def asset_files(root: Path = ASSETS) -> dict[str, str]:
    """Every asset file, by its path relative to the assets folder."""
    files = {"metadata.yaml": (root / "metadata.yaml").read_text()}
    for kind in KINDS:
        for path in sorted((root / kind).rglob("*.yaml")):
            files[path.relative_to(root).as_posix()] = path.read_text()
    return files


def template_values(settings: Settings) -> dict[str, str]:
    """The settings an asset template may name: no secret (the database password is sent
    beside the bundle, never written into a file)."""
    return settings.process_env(())


def render(files: dict[str, str], settings: Settings) -> dict[str, str]:
    """Fill ${LAKEHOUSE_...} in the database files; a name the settings lack is an error."""
    values = template_values(settings)
    out = dict(files)
    for name, text in files.items():
        if TEMPLATED.match(name):
            try:
                out[name] = string.Template(text).substitute(values)
            except (KeyError, ValueError) as exc:
                raise AssetError(f"superset_assets/{name}: unknown placeholder {exc}",
                                 "use ${LAKEHOUSE_...} names from .env.example") from exc
    return out


def parse(files: dict[str, str]) -> dict[str, dict]:
    parsed = {}
    for name, text in files.items():
        try:
            parsed[name] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise AssetError(f"superset_assets/{name}: not valid YAML: {exc}", "fix the file") from exc
    return parsed


def check_links(parsed: dict[str, dict]) -> list[str]:
    """Charts name existing datasets, dashboards existing charts, datasets the database."""
    problems = []
    by_kind = {k: {d["uuid"]: n for n, d in parsed.items() if n.startswith(k + "/")} for k in KINDS}
    for name, doc in parsed.items():
        if name.startswith("datasets/") and doc.get("database_uuid") not in by_kind["databases"]:
            problems.append(f"{name}: database_uuid {doc.get('database_uuid')} is not in databases/")
        if name.startswith("charts/") and doc.get("dataset_uuid") not in by_kind["datasets"]:
            problems.append(f"{name}: dataset_uuid {doc.get('dataset_uuid')} is not in datasets/")
        if name.startswith("dashboards/"):
            for key, node in (doc.get("position") or {}).items():
                if isinstance(node, dict) and node.get("type") == "CHART":
                    ref = node.get("meta", {}).get("uuid")
                    if ref not in by_kind["charts"]:
                        problems.append(f"{name}: {key} shows chart {ref}, which is not in charts/")
    return problems


def check_datasets(parsed: dict[str, dict], columns_of: Callable[[str, str], list[str] | None]) -> list[str]:
    """Each dataset's table exists and has every column the dataset names."""
    problems = []
    for name, doc in sorted(parsed.items()):
        if not name.startswith("datasets/"):
            continue
        schema, table = doc.get("schema"), doc["table_name"]
        actual = columns_of(schema, table)
        if actual is None:
            problems.append(f"{name}: table {schema}.{table} does not exist in Trino "
                            "(or the `superset` user may not read it)")
            continue
        missing = [c["column_name"] for c in doc.get("columns", [])
                   if not c.get("expression") and c["column_name"] not in actual]
        if missing:
            problems.append(f"{name}: {schema}.{table} has no column(s) {', '.join(missing)} "
                            f"(it has: {', '.join(actual)})")
    return problems


def trino_columns(settings: Settings) -> Callable[[str, str], list[str] | None]:
    """Column lookup as the `superset` Trino user: what Superset itself will be able to read."""
    from lakehouse import trino

    rows = trino.query(settings, "SELECT table_schema, table_name, column_name FROM information_schema.columns "
                       "ORDER BY table_schema, table_name, ordinal_position", user="superset")
    tables: dict[tuple[str, str], list[str]] = {}
    for schema, table, column in rows:
        tables.setdefault((schema, table), []).append(column)
    return lambda schema, table: tables.get((schema, table))


def marts_built(settings: Settings, root: Path = ASSETS) -> bool:
    """True if any table a dataset reads exists (dbt has built the marts at least once)."""
    parsed = parse(asset_files(root))
    columns_of = trino_columns(settings)
    return any(columns_of(d.get("schema"), d["table_name"]) is not None
               for n, d in parsed.items() if n.startswith("datasets/"))


def bundle(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in sorted(files.items()):
            zf.writestr(f"{BUNDLE_ROOT}/{name}", text)
    return buf.getvalue()


def unbundle(data: bytes) -> dict[str, str]:
    out = {}
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            out[info.filename.split("/", 1)[1]] = zf.read(info).decode()
    return out


def validate(settings: Settings, root: Path = ASSETS) -> tuple[dict[str, str], dict[str, dict]]:
    """Everything `import_assets` checks before it sends anything to Superset.

    Returns the rendered files and their parsed form."""
    files = render(asset_files(root), settings)
    parsed = parse(files)
    problems = check_links(parsed) + check_datasets(parsed, trino_columns(settings))
    if problems:
        raise AssetError("the Superset assets do not match the warehouse; nothing was imported:\n  "
                         + "\n  ".join(problems),
                         "build the marts first (`lakehouse dbt build`), or fix the dataset "
                         "(regenerate: `lakehouse superset datasets`)")
    return files, parsed


def import_assets(settings: Settings, root: Path = ASSETS, say=print) -> dict[str, int]:
    """Validate, then import everything by UUID (overwrite: re-importing duplicates nothing)."""
    from lakehouse.superset.client import SupersetClient

    files, parsed = validate(settings, root)
    password = settings.trino_superset_password.get_secret_value()
    passwords = {f"databases/{Path(n).name}": password for n in files if n.startswith("databases/")}
    SupersetClient(settings).login().import_assets(bundle(files), passwords)
    counts = {k: sum(1 for n in parsed if n.startswith(k + "/")) for k in KINDS}
    say("imported " + ", ".join(f"{v} {k}" for k, v in counts.items()) + f" into {settings.superset_url}")
    return counts


def import_stamp(settings: Settings) -> Path:
    return settings.data_path / "superset" / "assets-imported"


def import_if_changed(settings: Settings, root: Path = ASSETS, say=print) -> bool:
    """Import unless the same rendered assets were imported into this Superset already
    (`lakehouse up` calls this: no cost on a warm start, and edits made in the UI since are
    not overwritten until superset_assets/ changes; `make superset-import` always imports)."""
    import hashlib

    rendered = render(asset_files(root), settings)
    digest = hashlib.sha256(repr(sorted(rendered.items())).encode()).hexdigest()
    stamp = import_stamp(settings)
    if stamp.exists() and stamp.read_text() == digest:
        say("dashboards unchanged since the last import (make superset-import re-imports)")
        return False
    import_assets(settings, root, say=say)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(digest)
    return True


def export_assets(settings: Settings, root: Path = ASSETS) -> dict[str, str]:
    """What Superset holds, in the repo's layout: a file keeps its repo name (matched by
    UUID), and the database file is put back as its template (the export masks the
    password and holds this machine's paths)."""
    from lakehouse.superset.client import SupersetClient

    exported = unbundle(SupersetClient(settings).login().export_assets())
    repo = asset_files(root)
    repo_names = {yaml.safe_load(t).get("uuid"): n for n, t in repo.items() if n != "metadata.yaml"}
    files = {}
    for name, text in exported.items():
        doc = yaml.safe_load(text)
        kind = name.split("/", 1)[0]
        target = repo_names.get(doc.get("uuid")) if kind in KINDS else name
        if target is None:  # new in Superset: a stable name from its title, without the id
            target = re.sub(r"_\d+\.yaml$", ".yaml", name)
        files[target] = repo[target] if TEMPLATED.match(target) and target in repo else text
    return files


def normalize(name: str, doc: dict) -> dict:
    """An asset without what is local to one Superset: numeric ids, list order, export time.

    Two Superset instances given the same files hold the same assets if their exports
    normalize equal; ids are reassigned at every import (and remapped by UUID).
    """
    import copy
    import json

    doc = copy.deepcopy(doc)
    if name == "metadata.yaml":
        doc.pop("timestamp", None)
    if name.startswith("datasets/"):
        for key in ("columns", "metrics"):
            doc[key] = sorted(doc.get(key) or [], key=lambda c: c.get("column_name") or c.get("metric_name"))
    if name.startswith("charts/"):
        doc["params"].pop("datasource", None)
        qc = json.loads(doc.get("query_context") or "{}")
        qc.pop("datasource", None)
        qc.get("form_data", {}).pop("datasource", None)
        for q in qc.get("queries", []):
            q.pop("datasource", None)
        doc["query_context"] = qc
    if name.startswith("dashboards/"):
        ids = {}
        for node in (doc.get("position") or {}).values():
            if isinstance(node, dict) and node.get("type") == "CHART":
                ids[node["meta"].pop("chartId", None)] = node["meta"]["uuid"]
        for f in doc.get("metadata", {}).get("native_filter_configuration", []):
            scope = f.get("scope", {})
            scope["excluded"] = sorted(ids.get(i, i) for i in scope.get("excluded", []))
            f.pop("chartsInScope", None)
        doc.get("metadata", {}).pop("global_chart_configuration", None)
    return doc


def write_files(files: dict[str, str], dest: Path) -> None:
    for name, text in files.items():
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# ---- datasets from dbt ----------------------------------------------------------------

TEMPORAL = re.compile(r"^(date|timestamp)", re.IGNORECASE)


def dataset_uuid(schema: str, table: str) -> str:
    return str(uuid.uuid5(UUID_NAMESPACE, f"dataset:{schema}.{table}"))


def generate_datasets(manifest: dict, catalog: dict, database_uuid: str, database_dir: str,
                      schema: str = "marts") -> dict[str, str]:
    """One dataset per dbt model in `schema`: the columns and types dbt's catalog read from
    Trino, the descriptions from the models' yml."""
    out = {}
    for node_id, node in sorted(manifest["nodes"].items()):
        if (node.get("resource_type") != "model" or node.get("schema") != schema
                or node.get("config", {}).get("materialized") == "ephemeral"):
            continue
        table = node["alias"] or node["name"]
        cat = catalog["nodes"].get(node_id)
        if cat is None:
            raise AssetError(f"dbt's catalog has no columns for {schema}.{table}",
                             "run `lakehouse dbt build` and `lakehouse dbt docs generate` first")
        docs = node.get("columns", {})
        cols = sorted(cat["columns"].values(), key=lambda c: c["index"])
        temporal = [c["name"] for c in cols if TEMPORAL.match(c["type"])]
        columns = [{
            "column_name": c["name"], "verbose_name": None, "is_dttm": c["name"] in temporal,
            "is_active": True, "type": c["type"].upper(), "advanced_data_type": None,
            "groupby": True, "filterable": True, "expression": None,
            "description": (docs.get(c["name"], {}).get("description") or None),
            "python_date_format": None, "datetime_format": None, "extra": {},
        } for c in cols]
        doc = {
            "table_name": table, "main_dttm_col": temporal[0] if temporal else None,
            "description": " ".join((node.get("description") or "").split()) or None,
            "default_endpoint": None, "offset": 0, "cache_timeout": None, "catalog": None,
            "schema": schema, "sql": None, "params": None, "template_params": None,
            "filter_select_enabled": True, "fetch_values_predicate": None, "extra": None,
            "normalize_columns": False, "always_filter_main_dttm": False,
            "currency_code_column": None, "folders": None,
            "uuid": dataset_uuid(schema, table),
            "metrics": [{"metric_name": "count", "verbose_name": "COUNT(*)", "metric_type": "count",
                         "expression": "COUNT(*)", "description": None, "d3format": None,
                         "currency": None, "extra": {}, "warning_text": None}],
            "columns": columns, "version": "1.0.0", "database_uuid": database_uuid,
        }
        out[f"datasets/{database_dir}/{table}.yaml"] = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    return out


def sync_datasets(check: bool = False, root: Path = ASSETS) -> list[str]:
    """Regenerate datasets/ from dbt's target/manifest.json and target/catalog.json.

    Returns the files that differ (with check=True nothing is written). Compared as parsed
    YAML, so formatting alone never counts as a difference.
    """
    import json

    from lakehouse.dbt import latest_target

    target = latest_target(with_file="catalog.json")  # the newest `dbt docs generate`
    try:
        manifest = json.loads((target / "manifest.json").read_text())
        catalog = json.loads((target / "catalog.json").read_text())
    except FileNotFoundError as exc:
        raise AssetError(f"{exc.filename} is missing",
                         "run `lakehouse dbt build` then `lakehouse dbt docs generate`") from exc
    databases = [p for p in sorted((root / "databases").glob("*.yaml"))]
    if len(databases) != 1:
        raise AssetError(f"expected one database file in {root / 'databases'}, found {len(databases)}")
    db_doc = yaml.safe_load(databases[0].read_text())
    generated = generate_datasets(manifest, catalog, db_doc["uuid"], databases[0].stem)
    changed = []
    for name, text in generated.items():
        path = root / name
        if not path.exists() or yaml.safe_load(path.read_text()) != yaml.safe_load(text):
            changed.append(name)
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    return changed


def dashboards(root: Path = ASSETS) -> list[dict]:
    return [yaml.safe_load(p.read_text()) for p in sorted((root / "dashboards").glob("*.yaml"))]


def describe(settings: Settings) -> str:
    """Dashboard URLs and where the credentials are (for `make demo` and `lakehouse superset urls`)."""
    from lakehouse.settings import env_file_path

    lines = [f"Superset: {settings.superset_url}"]
    for d in dashboards():
        lines.append(f"  {d['dashboard_title']}: {settings.superset_url}/superset/dashboard/{d['slug']}/")
    env = env_file_path()
    lines.append(f"  log in as {settings.superset_admin_user} (Admin) or {settings.superset_viewer_user} "
                 f"(viewer); passwords: LAKEHOUSE_SUPERSET_ADMIN_PASSWORD / "
                 f"LAKEHOUSE_SUPERSET_VIEWER_PASSWORD in {env}")
    return "\n".join(lines)
