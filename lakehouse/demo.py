"""`make demo`: namespaces, a smoke load through Spark, one ingested cycle of both station
networks from the bundled simulator, the counts per batch, `dbt build` of the marts, a short
summary of them, and where to look next.

Scope: creates the layer namespaces; writes audit.smoke_load (one row per run), ingests
into raw / quarantine / audit exactly once, and builds staging and marts with dbt. Never
deletes.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone

from lakehouse.catalog import ensure_namespaces
from lakehouse.settings import Settings, env_file_path
from lakehouse.spark import spark_session, stop_session
from lakehouse.trino import query

SMOKE_TABLE = "audit.smoke_load"


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def init_namespaces(settings: Settings) -> None:
    created = ensure_namespaces(settings)
    say(f"- namespaces: {', '.join(created) if created else 'all present'}"
        f"{' (created)' if created else ''}")


def init_source_tables(settings: Settings) -> None:
    from lakehouse.contracts import load_all
    from spark_jobs.ingest import ensure_source_tables

    created = ensure_source_tables(settings, list(load_all().values()))
    say(f"- source tables: {', '.join(created) + ' (created, empty)' if created else 'all present'}")


def smoke_load(settings: Settings) -> int:
    """Append one row through Spark, then count the rows through Trino."""
    t0 = time.monotonic()
    say("- smoke load: through the Spark Connect server ...")
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
        stop_session(spark)
    rows = query(settings, f"SELECT count(*) FROM {SMOKE_TABLE}")[0][0]
    say(f"  Spark wrote 1 row; Trino sees {rows} row(s) in {cat}.{SMOKE_TABLE} "
        f"({time.monotonic() - t0:.1f}s)")
    return rows


def ingest_demo_cycle(settings: Settings) -> list:
    """Ingest one full cycle (10 batches) of both networks from the bundled simulator.

    The simulator runs here as a real HTTP server whose clock moves on as soon as a batch is
    ingested, so the demo doesn't wait 10 publication periods. Same seed and group on every
    run: a second `make demo` replays every batch, and writes nothing.
    """
    import tempfile
    from pathlib import Path

    from lakehouse.contracts import load_all
    from lakehouse.simulator.server import SteppedSimulator
    from spark_jobs.ingest import close_ingestors, open_ingestors

    contracts = load_all()
    with tempfile.TemporaryDirectory() as tmp:
        sim = SteppedSimulator(Path(tmp) / "state.json", seed=settings.simulator_seed,
                               rows_per_batch=settings.simulator_rows_per_batch,
                               fault_rate=settings.simulator_fault_rate)
        ingestors = []
        try:
            demo_settings = settings.model_copy(update={"batch_api_url": sim.url})
            ingestors = open_ingestors(demo_settings, [contracts["network_a"], contracts["network_b"]])
            say(f"- ingesting one cycle of both networks, group {settings.group_number} "
                f"({settings.simulator_rows_per_batch} rows per batch, fault rate {settings.simulator_fault_rate:g})")
            results = []
            for batch in range(1, 11):
                for ing in ingestors:
                    r = ing.ingest(settings.group_number)
                    say(f"  [{batch}/10] {r.line()}")
                    results.append(r)
                sim.next_batch()
            return results
        finally:
            sim.stop()
            close_ingestors(ingestors)


def build_marts(settings: Settings) -> None:
    """`dbt build` (seeds, models, tests) on what was ingested."""
    from lakehouse import dbt

    say("- dbt build: staging views, marts and their tests, on Trino ...")
    t0 = time.monotonic()
    dbt.require_sources(settings)
    dbt.run(settings, ["build"], report=say)
    say(f"  dbt build done ({time.monotonic() - t0:.0f}s)")


def import_dashboards(settings: Settings) -> None:
    """What `make superset-import` does: the marts exist now, so the dashboards can load."""
    from lakehouse.superset import assets

    say("- importing the Superset dashboards (superset_assets/) ...")
    assets.import_assets(settings, say=lambda m: say("  " + m))


def marts_summary(settings: Settings) -> str:
    """States with the highest PM2.5 on the latest day, and data quality per source of the
    contracts (a source whose contract was removed keeps its rows, and is not summarised)."""
    states = query(settings, """
        SELECT state_name, day_utc, round(mean_value, 1), stations_reporting, stations_exceeding,
               round(completeness_pct, 1)
        FROM marts.fct_daily_state_indicators
        WHERE metric = 'pm25'
          AND day_utc = (SELECT max(day_utc) FROM marts.fct_daily_state_indicators WHERE metric = 'pm25')
        ORDER BY mean_value DESC LIMIT 5""")
    from lakehouse.contracts import load_all

    sources = ", ".join(f"'{c}'" for c in load_all())  # the platform's sources (ids: [a-z0-9_])
    quality = query(settings, f"""
        SELECT source, count(*), sum(rows_in), sum(rows_quarantined), sum(rows_unknown_station),
               count_if(status <> 'committed')
        FROM marts.mart_data_quality WHERE source IN ({sources}) GROUP BY source ORDER BY source""")
    lines = ["", "marts: states with the highest PM2.5 on the latest day (WHO 2021 24-h guideline: "
                 "15 ug/m3):",
             f"  {'state':<20} {'day':<10} {'mean':>6} {'stations':>8} {'over':>5} {'complete %':>10}"]
    for name, day, mean, reporting, exceeding, complete in states:
        lines.append(f"  {name:<20} {day!s:<10} {mean:>6} {reporting:>8} {exceeding:>5} {complete:>10}")
    lines += ["", "marts: data quality per source (mart_data_quality):",
              f"  {'source':<10} {'batches':>7} {'rows in':>8} {'quar.':>6} {'unknown station':>15} {'not committed':>13}"]
    for source, batches, rows_in, quarantined, unknown, failed in quality:
        lines.append(f"  {source:<10} {batches:>7} {rows_in:>8} {quarantined:>6} {unknown:>15} {failed:>13}")
    return "\n".join(lines)


def summary_table(results: list) -> str:
    lines = ["", "rows per batch (in = valid + quarantined):",
             f"  {'source':<10} {'batch':>5} {'in':>6} {'valid':>6} {'quar.':>6}  status"]
    for r in results:
        lines.append(f"  {r.source:<10} {str(r.batch_number):>5} {r.rows_in:>6} {r.rows_valid:>6} "
                     f"{r.rows_quarantined:>6}  {r.status}")
    return "\n".join(lines)


def where_to_look(settings: Settings) -> str:
    from lakehouse.superset import assets

    return "\n".join([
        "",
        "The lakehouse is up. Where to look:",
        f"  Trino web UI      {settings.trino_url}/ui/  (user lakehouse, password "
        "LAKEHOUSE_TRINO_LAKEHOUSE_PASSWORD; the certificate is self-signed: "
        f"{settings.trino_ca_file})",
        f"  SQL               make sql   |   make sql Q=\"SELECT * FROM {SMOKE_TABLE}\"",
        "  marts             make sql Q=\"SELECT * FROM marts.fct_observations_hourly LIMIT 10\" FORMAT=ALIGNED",
        "  dbt               make dbt-build   |   make dbt ARGS=\"test -s fct_observations\"",
        "  ingested data     make sql Q=\"SELECT batch_number, rows_in, rows_valid, rows_quarantined "
        "FROM audit.ingestion_log ORDER BY finished_at DESC LIMIT 20\" FORMAT=ALIGNED",
        "  quarantine        make sql Q=\"SELECT reasons, count(*) FROM quarantine.network_a GROUP BY 1\" FORMAT=ALIGNED",
        f"  batch API docs    {settings.simulator_url}/docs",
        f"  MinIO             {settings.s3_endpoint} (S3), http://{settings.host}:{settings.minio_console_port} (console)",
        f"  PostgreSQL        postgresql://{settings.postgres_address}:{settings.postgres_port}/{settings.catalog_db}",
        f"  credentials       {env_file_path()}  (generated, mode 0600)",
        f"  logs              make logs   ({settings.log_path})",
        "  stop / status     make down  |  make status",
        "",
        "Dashboards (Superset):",
        *("  " + ln for ln in assets.describe(settings).splitlines()),
    ])
