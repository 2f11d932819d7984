"""`make bench-superset`: how long each dashboard's chart data takes through Superset,
against the same SQL sent directly to Trino, in the same run.

On the bench stack, emptied first: one cycle of both networks ingested by Spark from the
simulator, the marts built by dbt, superset_assets/ imported. Then, for each dashboard,
`repeats` loads after one warm-up. A load requests every chart's data in turn, the way
the dashboard does: Superset's chart-data API with the chart's saved query context
(force=true; Superset's data cache is off anyway). The baseline sends the SQL Superset
generated for each chart (asked once, with result_type=query) straight to Trino as the
same `superset` user, over one open connection, and fetches every row.
"""

from __future__ import annotations

import copy
import json
import time

import sqlparse

from lakehouse.bench.dbt import ingest_batches, pct, say, simulated_networks
from lakehouse.bench.report import empty_bench_stack, line, write_section
from lakehouse.stack import manager


def _dashboard_charts(client, dashboard: dict) -> list[tuple[str, dict]]:
    """(chart name, saved query context) of each chart on a dashboard, in layout order."""
    charts = {c["slice_name"]: c["id"] for c in client.list_all("chart", ["id", "slice_name"])}
    out = []
    for node in dashboard["position"].values():
        if isinstance(node, dict) and node.get("type") == "CHART":
            name = node["meta"]["sliceName"]
            saved = client.get(f"/api/v1/chart/{charts[name]}")["result"]
            qc = json.loads(saved["query_context"])
            qc["force"] = True
            out.append((name, qc))
    return out


def run(repeats: int = 20, rows: int | None = None) -> list[str]:
    from lakehouse import dbt
    from lakehouse.superset import assets
    from lakehouse.superset.client import SupersetClient
    from lakehouse.trino import connect
    from spark_jobs.ingest import MAX_BATCH

    settings = empty_bench_stack("bench-superset", profile="bi")
    rows = rows or settings.simulator_rows_per_batch
    group = int(time.time()) % 9000 // 10 * 10 + 1000
    results: dict[str, dict[str, list[float]]] = {}
    per_chart: dict[str, tuple[list[float], list[float]]] = {}
    try:
        with simulated_networks(settings, rows) as (sim, ingestors):
            say(f"- ingesting one cycle of both networks ({rows} rows per batch), group {group}")
            ingest_batches(ingestors, sim, group, MAX_BATCH)
        say("- dbt build, then superset import")
        dbt.run(settings, ["build"], capture=True)
        assets.import_assets(settings, say=say)
        client = SupersetClient(settings).login()
        conn = connect(settings, user="superset")
        cur = conn.cursor()
        for dashboard in assets.dashboards():
            title = dashboard["dashboard_title"]
            charts = _dashboard_charts(client, dashboard)
            sqls = []
            for _, qc in charts:
                ask = copy.deepcopy(qc)
                ask["result_type"] = "query"
                texts = [q["query"] for q in client.chart_data(ask).json()["result"]]
                # Superset ends each with ';', which Trino's client refuses
                sqls.append([st.strip().rstrip(";") for t in texts for st in sqlparse.split(t) if st.strip()])
            say(f"- {title}: {len(charts)} charts, {repeats} loads each way after a warm-up")
            times = {"superset": [], "trino": []}
            for i in range(repeats + 1):
                t_sup = t_tri = 0.0
                for (name, qc), chart_sqls in zip(charts, sqls):
                    t0 = time.perf_counter()
                    body = client.chart_data(qc).json()
                    dt_sup = time.perf_counter() - t0
                    if any(r.get("error") for r in body["result"]):
                        raise RuntimeError(f"{title} / {name}: {body['result']}")
                    t0 = time.perf_counter()
                    for sql in chart_sqls:
                        cur.execute(sql)
                        cur.fetchall()
                    dt_tri = time.perf_counter() - t0
                    t_sup, t_tri = t_sup + dt_sup, t_tri + dt_tri
                    if i:
                        per_chart.setdefault(f"{title} / {name}", ([], []))[0].append(dt_sup)
                        per_chart[f"{title} / {name}"][1].append(dt_tri)
                if i:  # the first load warms both paths up
                    times["superset"].append(t_sup)
                    times["trino"].append(t_tri)
            results[title] = times
        conn.close()
    finally:
        manager.down(settings)

    lines = []
    table = []
    for title, times in results.items():
        key = title.lower().replace(" ", "_")
        s50, s95, t50, t95 = (pct(times["superset"], .5), pct(times["superset"], .95),
                              pct(times["trino"], .5), pct(times["trino"], .95))
        lines.append(line(f"superset_{key}_load_p50", s50, "s", t50, "ratio <= 1.5"))
        lines.append(line(f"superset_{key}_load_p95", s95, "s", t95, "ratio <= 1.5"))
        table.append(f"| {title} | {s50 * 1000:.0f} | {s95 * 1000:.0f} | {t50 * 1000:.0f} | {t95 * 1000:.0f} | "
                     f"{s50 / t50:.2f} | {s95 / t95:.2f} |")
    chart_rows = [f"| {name} | {pct(s, .5) * 1000:.0f} | {pct(t, .5) * 1000:.0f} | {pct(s, .5) / pct(t, .5):.2f} |"
                  for name, (s, t) in per_chart.items()]
    body = "\n".join([
        f"`make bench-superset`: one cycle (10 batches x 2 networks, {rows} rows per batch) ingested, the marts "
        f"built, superset_assets/ imported. Each dashboard loaded {repeats} times after a warm-up; a load "
        "requests each chart's data in turn. Baseline: the SQL Superset generated for each chart, sent "
        "directly to Trino (same user, one open connection), every row fetched. Times in ms.",
        "",
        "| dashboard | Superset p50 | Superset p95 | Trino p50 | Trino p95 | p50 ratio | p95 ratio |",
        "|---|---|---|---|---|---|---|",
        *table,
        "",
        "Per chart (medians):",
        "",
        "| chart | Superset | Trino | ratio |",
        "|---|---|---|---|",
        *chart_rows,
        "",
        "```",
        *lines,
        "```",
    ])
    write_section("bench-superset", body)
    for out in lines:
        print(out)
    return lines
