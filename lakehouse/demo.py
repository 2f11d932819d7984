"""`make demo` for the foundation: namespaces, a smoke load through Spark, a check through
Trino, and where to look next.

Scope: creates the layer namespaces; writes audit.smoke_load (Spark's audit/ prefix) with
one row per run; reads it back through Trino. Never touches source data.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone

from lakehouse.catalog import ensure_namespaces
from lakehouse.settings import Settings, env_file_path
from lakehouse.spark import spark_session
from lakehouse.stack.services import service_url
from lakehouse.trino import query

SMOKE_TABLE = "audit.smoke_load"


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def init_namespaces(settings: Settings) -> None:
    created = ensure_namespaces(settings)
    say(f"- namespaces: {', '.join(created) if created else 'all present'}"
        f"{' (created)' if created else ''}")


def smoke_load(settings: Settings) -> int:
    """Append one row through Spark, then count the rows through Trino."""
    t0 = time.monotonic()
    say("- smoke load: starting Spark ...")
    spark = spark_session(settings, "lakehouse-smoke-load")
    try:
        cat = settings.catalog_name
        spark.sql(f"CREATE TABLE IF NOT EXISTS {cat}.{SMOKE_TABLE} "
                  "(run_at TIMESTAMP, engine STRING, note STRING) USING iceberg")
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        df = spark.createDataFrame([(now, "spark", "foundation smoke load")],
                                   "run_at TIMESTAMP, engine STRING, note STRING")
        df.writeTo(f"{cat}.{SMOKE_TABLE}").append()
    finally:
        spark.stop()
    rows = query(settings, f"SELECT count(*) FROM {SMOKE_TABLE}")[0][0]
    say(f"  Spark wrote 1 row; Trino sees {rows} row(s) in {cat}.{SMOKE_TABLE} "
        f"({time.monotonic() - t0:.1f}s)")
    return rows


def where_to_look(settings: Settings) -> str:
    return "\n".join([
        "",
        "The lakehouse is up. Where to look:",
        f"  Trino web UI      {service_url(settings, 'trino')}/ui/  (user: any name)",
        f"  SQL               make sql   |   make sql Q=\"SELECT * FROM {SMOKE_TABLE}\"",
        f"  MinIO             {service_url(settings, 'minio')}",
        f"  PostgreSQL        {service_url(settings, 'postgres')}/{settings.catalog_db}",
        f"  credentials       {env_file_path()}  (generated, mode 0600)",
        f"  logs              make logs   ({settings.log_path})",
        "  stop / status     make down  |  make status",
    ])
