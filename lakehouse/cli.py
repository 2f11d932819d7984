"""The `lakehouse` command. Make targets, tests and (later) DAGs call these subcommands."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from lakehouse.errors import LakehouseError
from lakehouse.settings import Settings, load_settings
from lakehouse.stack import registry


def _settings() -> Settings:
    return load_settings()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Lakehouse platform: API batches -> Spark -> Iceberg on MinIO -> dbt on Trino.

    Settings come from `.env` (generated on first run with random secrets; see
    .env.example). Start with `lakehouse doctor`, then `lakehouse up`.
    """


@cli.command()
def doctor() -> None:
    """Check prerequisites: JDKs, Go, PostgreSQL, disk, memory, free ports."""
    from lakehouse.stack import doctor as doc, supervisor

    settings = _settings()
    ours = set()
    if supervisor.is_running(settings):
        ours = set(doc.stack_ports(settings).values())
    checks = doc.run_checks(settings, ours)
    click.echo(doc.format_checks(checks))
    failed = [c for c in checks if not c.ok]
    if failed:
        raise LakehouseError(f"{len(failed)} preflight check(s) failed", "fix the FAIL lines above")
    click.echo("all checks passed")


def _profiles() -> list[str]:
    return list(registry.load().profiles())


@cli.command()
@click.option("--profile", "-p", "profile", metavar="NAME",
              help="Start this profile (with everything it depends on): "
                   + ", ".join(f"{k} ({', '.join(v)})" for k, v in registry.load().profiles().items())
                   + ". Same names as the compose profiles. Default: all.")
@click.option("--service", "-s", "services", multiple=True, metavar="NAME",
              help="Start this service and what it depends on (repeatable): "
                   + ", ".join(registry.load().names) + ".")
def up(profile: str | None, services: tuple[str, ...]) -> None:
    """Start the native stack, each service once what it depends on is ready, provisioning
    between them. `lakehouse services` shows the order. Idempotent: what runs is left alone."""
    from lakehouse.stack import manager

    settings = _settings()
    reg = registry.load()
    if profile is not None:
        reg.profile(profile)  # an unknown name is an error listing the known ones
    timings = manager.up(settings, services=services, profile=profile or (None if services else "all"))
    if "superset" in timings:
        _import_dashboards_if_marts(settings)
    _probe_own_endpoints(settings)


def _probe_own_endpoints(settings: Settings) -> None:
    """Probe the endpoints of sources the platform does not run, so a new source's DAG is
    unpaused once its endpoint answers (docs/contracts.md, "A new source")."""
    from lakehouse.contracts import ContractError, load_all
    from lakehouse.ingest import probe

    try:
        own = tuple(c.id for c in load_all().values() if probe.gated(c))
    except ContractError as exc:  # the stack is up; the contracts are a separate problem
        click.echo(f"  the contracts' endpoints were not probed: {exc}", err=True)
        return
    if own:
        report_probes(settings, own)


def _import_dashboards_if_marts(settings: Settings) -> None:
    """The dashboards are content: imported once the marts they read exist, and again only
    when superset_assets/ or the settings it is rendered with changed."""
    from lakehouse.superset import assets

    if not assets.marts_built(settings):
        click.echo("  Superset is up; its dashboards are not imported yet, because the marts are not built.\n"
                   "  -> run `make demo` (or `lakehouse dbt build`), then `make superset-import`", err=True)
        return
    assets.import_if_changed(settings, say=lambda m: click.echo("  " + m, err=True))


@cli.command()
def down() -> None:
    """Stop the stack (only this data folder's processes). State stays in the data folder."""
    from lakehouse.stack import manager

    settings = _settings()
    if not manager.down(settings):
        click.echo(f"stack is not running (nothing of {settings.data_path} to stop)")


@cli.command()
def status() -> None:
    """Each program's state, health and address. Exit 3 if a service `up` started is not
    healthy (services left out of the profile show as `off`)."""
    from lakehouse.stack import manager

    rows = manager.status(_settings())
    for r in rows:
        if r["healthy"]:
            mark = "healthy"
        elif r["state"] == "DOWN":
            mark = "DOWN"
        elif not r["selected"] and r["state"] in ("STOPPED", "EXITED"):
            mark = "off"
        else:
            mark = "unhealthy"
        r["mark"] = mark
        click.echo(f"{r['program']:<21} {r['state']:<9} pid={str(r['pid']):<8} {mark:<10} {r['detail']:<24} {r['url']}")
    if not rows or any(r["mark"] not in ("healthy", "off") for r in rows):
        sys.exit(3)


@cli.command("services")
def services_cmd() -> None:
    """The service registry: each server, its profile, what it needs, its programs and
    ports, the start order and the profiles (lakehouse/stack/services/)."""
    settings = _settings()
    reg = registry.load()
    for name, svc in reg.services.items():
        ports = ", ".join(f"{k}={v}" for k, v in reg.ports(settings, [name]).items()) or "-"
        click.echo(f"{name:<10} profile {svc.profile:<14} needs {', '.join(svc.depends_on) or '-':<36} "
                   f"programs {', '.join(p.name for p in svc.programs)}")
        click.echo(f"{'':<10} {svc.description}")
        click.echo(f"{'':<10} ports {ports}")
    click.echo("start order: " + " | ".join(", ".join(w) for w in reg.stages()))
    for prof, names in reg.profiles().items():
        click.echo(f"profile {prof}: {', '.join(names)}")


@cli.command()
@click.argument("service", required=False, type=click.Choice(registry.load().program_names() + ["supervisord"]))
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("-n", "--lines", default=50, show_default=True, help="Lines of history per log.")
def logs(service: str | None, follow: bool, lines: int) -> None:
    """Print the logs of one program, or of all."""
    from lakehouse.stack import manager

    manager.logs(_settings(), service, follow, lines)


@cli.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def clean(yes: bool) -> None:
    """Stop the stack and DELETE its data folder (all tables, catalog and logs)."""
    from lakehouse.stack import manager

    settings = _settings()
    if not settings.data_path.exists():
        click.echo(f"nothing to delete: {settings.data_path} does not exist")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise LakehouseError(f"refusing to delete {settings.data_path} without confirmation",
                                 "run interactively, or pass --yes (make clean YES=1)")
        click.confirm(f"Delete {settings.data_path} (every table, the catalog and the logs)?",
                      abort=True)
    manager.clean(settings)
    click.echo(f"deleted {settings.data_path}")


@cli.command()
@click.option("-q", "--query", "statement", help="Run one statement, print the result, exit.")
@click.option("--format", "output_format", help="Trino CLI output format (CSV, TSV_HEADER, ALIGNED, JSON, ...).")
def sql(statement: str | None, output_format: str | None) -> None:
    """Open the Trino CLI on the lakehouse catalog, or run one statement."""
    from lakehouse.trino import cli as trino_cli

    sys.exit(trino_cli(_settings(), statement, output_format))


@cli.command()
@click.option("--profile", "-p", "profile", metavar="NAME", help="Only this profile's services [default: all].")
@click.option("--service", "-s", "services", multiple=True, metavar="NAME", help="Only this service (repeatable).")
def provision(profile: str | None, services: tuple[str, ...]) -> None:
    """Provision servers started by someone else (compose, an external PostgreSQL or S3):
    for each selected service, in start order, its pre-start setup (certificates, password
    files, migrations) and its provisioning (databases and roles, bucket, S3 users and
    policies, users). `up` does this itself."""
    settings = _settings()
    reg = registry.load()
    chosen = list(services) + (reg.profile(profile) if profile else [])
    for name in reg.closure(chosen or reg.names):
        svc = reg.services[name]
        for step in (svc.initialize, svc.provision):
            if step:
                step(settings, lambda m: click.echo(m))
        click.echo(f"provisioned {name}")


@cli.command("init")
def init_cmd() -> None:
    """Create the layer namespaces (raw, quarantine, audit, staging, intermediate, marts) and
    every contract's raw and quarantine tables and the audit log, empty, where missing."""
    from lakehouse.demo import init_namespaces, init_source_tables
    from lakehouse.stack import manager

    settings = _settings()
    manager.require(settings, "postgres", "minio")
    init_namespaces(settings)
    init_source_tables(settings)


@cli.command("dbt", context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def dbt_cmd(args: tuple[str, ...]) -> None:
    """Run dbt in dbt_project/ against the stack's Trino: `lakehouse dbt build`, `lakehouse dbt
    test -s fct_observations`, `lakehouse dbt --help`. The sources file is regenerated from the
    contracts first; failed tests print their offending rows."""
    from lakehouse import dbt
    from lakehouse.catalog import ensure_namespaces
    from lakehouse.stack import manager

    settings = _settings()
    if args and args[0] not in ("--help", "-h", "--version", "parse", "clean", "deps", "ls", "list", "debug"):
        manager.require(settings, "postgres", "minio", "trino")
        ensure_namespaces(settings)
        dbt.require_sources(settings)
    dbt.run(settings, list(args) or ["--help"])


@cli.command("airflow", context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def airflow_cmd(args: tuple[str, ...]) -> None:
    """Run the `airflow` command with the stack's Airflow settings: `lakehouse airflow dags
    list`, `lakehouse airflow dags test ingest_network_a`, `lakehouse airflow --help`."""
    import os

    from lakehouse.stack.services import airflow as runtime

    settings = _settings()
    os.chdir(runtime.REPO_ROOT)
    os.execve(str(runtime.AIRFLOW_BIN), [str(runtime.AIRFLOW_BIN), *(args or ("--help",))],
              runtime.airflow_env(settings))


@cli.group()
def marts() -> None:
    """The marts as the scheduler keeps them: coalesced, skipped when nothing changed."""


@marts.command("update", context_settings={"ignore_unknown_options": True})
@click.option("--settle", "settle_seconds", type=float, default=5.0, show_default=True,
              help="Wait until no source table has committed for this many seconds, so batches "
                   "arriving together share one build (0: don't wait).")
@click.option("--settle-max", "settle_max_seconds", type=float, default=20.0, show_default=True,
              help="Wait at most this long for the sources to settle.")
@click.option("--force", is_flag=True, help="Build even if nothing changed since the last build.")
@click.option("--gate", is_flag=True,
              help="One `dbt build` in dbt's order: each model's data tests run before its children, and a "
                   "failure stops them. By default the models publish first and the data tests follow.")
@click.option("--defer-rest", "defer_rest", type=float, default=0.0, show_default=True, metavar="SECONDS",
              help="When batches committed while a build ran its publish-first models, leave the rest of it (the "
                   "other marts, the data tests) to the next build, which covers both, as long as the last "
                   "complete build started less than SECONDS ago (the scheduler's DAG uses "
                   "LAKEHOUSE_DBT_DEFER_REST_SECONDS). 0: complete every build.")
@click.option("--keep-up", "keep_up", type=float, default=0.0, show_default=True, metavar="SECONDS",
              help="For this many seconds, when batches committed during a build, build again at once in this "
                   "process, instead of ending and leaving them to the next run (the scheduler's DAG uses "
                   "LAKEHOUSE_DBT_KEEP_UP_SECONDS). 0: one build.")
@click.option("--all-rows", is_flag=True,
              help="Test every row, not only those of the batches since the last builds (with --force: the "
                   "nightly full check the maintenance DAG runs).")
@click.argument("dbt_args", nargs=-1, type=click.UNPROCESSED)
def marts_update(settle_seconds: float, settle_max_seconds: float, force: bool, gate: bool,
                 defer_rest: float, keep_up: float, all_rows: bool, dbt_args: tuple[str, ...]) -> None:
    """`dbt build [DBT_ARGS]` if a source table (raw, quarantine, audit) or the dbt project
    changed since the last successful build; otherwise exit 99 at once ("skipped"). One build
    covers every batch that committed before it started. The models are built first, then
    their data tests, on the same snapshots of the sources (see --gate); a failed test fails
    the command. Each build is recorded in the ledger that `lakehouse marts log` prints.
    Example: `lakehouse marts update -- --exclude resource_type:unit_test`."""
    from lakehouse import marts as ledger
    from lakehouse.catalog import ensure_namespaces
    from lakehouse.stack import manager

    settings = _settings()
    manager.require(settings, "postgres", "minio", "trino")
    ensure_namespaces(settings)
    sys.exit(ledger.update(settings, list(dbt_args), settle_seconds=settle_seconds,
                           settle_max_seconds=settle_max_seconds, force=force, gate=gate,
                           defer_rest=defer_rest, keep_up=keep_up, all_rows=all_rows,
                           say=lambda m: click.echo(m, err=True)))


@marts.command("log")
@click.option("-n", "limit", type=int, default=20, show_default=True, help="How many builds to show, newest first.")
def marts_log(limit: int) -> None:
    """The recorded mart builds: when, how long, the outcome, what became of the rest of the
    build after the publish-first marts (done, deferred, failed), and which source tables had
    changed since the build before."""
    from lakehouse import marts as ledger

    rows = ledger.log(_settings(), limit)
    if not rows:
        click.echo("no mart build recorded yet (`lakehouse marts update` records them)")
    for finished, status, seconds, command, changed, rest in rows:
        click.echo(f"{finished:%Y-%m-%d %H:%M:%S %Z}  {status:<8} {seconds:7.1f}s  rest {rest or '-':<8}  "
                   f"{command}  changed: {', '.join(changed) or '-'}")


@cli.command("lint-sql")
@click.option("--fix", is_flag=True, help="Let sqlfluff fix what it can, then report the rest.")
def lint_sql(fix: bool) -> None:
    """Lint the dbt models and tests with sqlfluff (Trino dialect, rendered by dbt; needs Trino up)."""
    from lakehouse import dbt
    from lakehouse.stack import manager

    settings = _settings()
    manager.require(settings, "trino")
    sys.exit(dbt.lint(settings, fix=fix).returncode)


@cli.command()
def demo() -> None:
    """Bring the platform up and run its main job, then print where to look."""
    from lakehouse import demo as d
    from lakehouse.stack import manager

    settings = _settings()
    manager.up(settings, profile="all")
    d.init_namespaces(settings)
    d.smoke_load(settings)
    results = d.ingest_demo_cycle(settings)
    click.echo(d.summary_table(results))
    d.build_marts(settings)
    click.echo(d.marts_summary(settings))
    d.import_dashboards(settings)
    click.echo(d.where_to_look(settings))


@cli.command()
@click.option("--source", "-s", "sources", multiple=True, required=True,
              help="Contract id (contracts/<id>.yaml); repeat for several, or 'all'.")
@click.option("--group", "-g", type=int, help="Group number to ask the API for [default: the contract's "
              "endpoint.group_number, else LAKEHOUSE_GROUP_NUMBER].")
@click.option("--batch", "-b", "batch_number", type=int, help="Wait for this batch number, then ingest it.")
@click.option("--cycle", is_flag=True, help="Ingest every batch as it is published, to the cycle's last batch.")
@click.option("--cycles", type=click.IntRange(min=1), help="Like --cycle, for this many cycles (the API must be "
              "restarted between them: by someone, or by ingestion with the contract's endpoint.restart).")
@click.option("--follow", type=click.FloatRange(min=0), metavar="SECONDS",
              help="If the batch the API serves now was already ingested, keep polling for up to "
                   "SECONDS and ingest the next one as soon as it is published (the scheduler passes "
                   "most of its period, so each run catches its publication within a poll).")
@click.option("--poll", default=5.0, show_default=True, help="Seconds between polls (--batch, --cycle, --follow).")
@click.option("--on-missed", type=click.Choice(["fail", "report"]), default="fail", show_default=True,
              help="A batch published and withdrawn before it was fetched is always recorded in "
                   "audit.ingestion_log as missed; `fail` also exits non-zero (the scheduler passes "
                   "`report` and fails its run in a gate, so a retry can't hide it).")
@click.option("--on-held", type=click.Choice(["fail", "report"]), default="fail", show_default=True,
              help="A batch the contract's quality gate holds stays staged until `lakehouse batches "
                   "release|reject`; `fail` also exits non-zero (the scheduler passes `report` and fails "
                   "its run in its quality gate).")
@click.option("--timeout", default=30.0, show_default=True, help="HTTP timeout per request, seconds.")
@click.option("--json", "as_json", is_flag=True,
              help="Also print each batch's result as one JSON line, last (the scheduler reads it).")
def ingest(sources: tuple[str, ...], group: int | None, batch_number: int | None, cycle: bool,
           cycles: int | None, follow: float | None, poll: float, on_missed: str, on_held: str, timeout: float,
           as_json: bool) -> None:
    """Ingest batches from the batch API into raw / quarantine / audit (exactly once).

    Without --batch or --cycle, ingests the batch the API publishes now. A batch already
    ingested is a no-op; a changed payload under an ingested batch number of the same cycle
    is quarantined and reported. The cycle comes from the API when the contract says where
    it sends it, and is inferred otherwise (docs/ingestion.md). Exits non-zero if any batch
    was rejected or failed, or was missed (unless --on-missed report).
    """
    from lakehouse.contracts import load_all
    from lakehouse.stack import manager
    from spark_jobs.ingest import close_ingestors, ingest_cycles, ingest_following, open_ingestors

    if sum(map(bool, (batch_number is not None, cycle or cycles, follow is not None))) > 1:
        raise click.UsageError("give one of --batch, --cycle/--cycles and --follow")
    settings = _settings()
    contracts = load_all()
    wanted = list(contracts) if "all" in sources else list(sources)
    unknown = [s for s in wanted if s not in contracts]
    if unknown:
        raise LakehouseError(f"unknown source(s): {', '.join(unknown)}",
                             f"known: {', '.join(contracts)} (contracts/*.yaml)")
    # The group: --group, else the contract's endpoint.group_number, else LAKEHOUSE_GROUP_NUMBER.
    groups: dict[int, list] = {}
    for s in wanted:
        declared = contracts[s].source.group_number
        g = group if group is not None else declared if declared is not None else settings.group_number
        groups.setdefault(g, []).append(contracts[s])
    manager.require(settings, "postgres", "minio")
    results = []
    for g, chosen in groups.items():
        ingestors = open_ingestors(settings, chosen, timeout=timeout)
        try:
            if cycle or cycles:
                results += ingest_cycles(ingestors, g, cycles=cycles or 1, poll=poll, report=click.echo)
            elif follow is not None:
                results += ingest_following(ingestors, g, follow=follow, poll=poll, report=click.echo)
            else:
                for ing in ingestors:
                    r = (ing.ingest_batch_number(g, batch_number, poll=poll) if batch_number is not None
                         else ing.ingest(g))
                    click.echo(r.line())
                    results.append(r)
        finally:
            close_ingestors(ingestors)
    if as_json:
        import dataclasses
        import json

        for r in results:
            click.echo(json.dumps(dataclasses.asdict(r), sort_keys=True))
    bad = [r.batch_id for r in results if r.status in ("rejected", "failed")]
    missed = [m for r in results for m in r.missed]
    held = [r.batch_id for r in results if r.status == "held"] if on_held == "fail" else []
    if bad or (missed and on_missed == "fail") or held:
        what = [f"{len(bad)} batch(es) rejected or failed: {', '.join(bad)}"] if bad else []
        if missed and on_missed == "fail":
            what.append(f"{len(missed)} batch(es) missed: {', '.join(missed)}")
        if held:
            what.append(f"{len(held)} batch(es) held by the quality gate: {', '.join(held)} (`lakehouse "
                        "batches held`, then `lakehouse batches release|reject ID`)")
        raise LakehouseError("; ".join(what), "see the lines above; each is in audit.ingestion_log under its "
                             "batch_id (missed ones with status 'missed')")


@cli.command()
@click.option("--layer", "-l", "layers", multiple=True, required=True,
              type=click.Choice(["all", "raw", "quarantine", "audit", "staging", "intermediate", "marts"]),
              help="Layer (namespace) whose tables to maintain; repeat, or 'all'.")
@click.option("--table", "-t", "only", multiple=True, help="Only this table of the layer (repeatable).")
def maintain(layers: tuple[str, ...], only: tuple[str, ...]) -> None:
    """Compact small files, expire old snapshots and remove orphan files in every Iceberg
    table of a layer. Retentions: LAKEHOUSE_MAINTENANCE_SNAPSHOT_RETENTION and
    LAKEHOUSE_MAINTENANCE_ORPHAN_RETENTION (7d). Query results never change."""
    from lakehouse.catalog import NAMESPACES
    from lakehouse.maintenance import maintain as run
    from lakehouse.stack import manager

    settings = _settings()
    manager.require(settings, "postgres", "minio", "trino")
    for layer in (NAMESPACES if "all" in layers else layers):
        run(settings, layer, list(only) or None, say=click.echo)


@cli.group()
def sources() -> None:
    """The contracts' endpoints: health probes that let a new source's DAG run."""


@sources.command("probe")
@click.option("--source", "-s", "only", multiple=True, help="Only this contract id (repeatable).")
def sources_probe(only: tuple[str, ...]) -> None:
    """GET each contract's endpoint once (with its auth header). A source with an endpoint
    of its own has its ingestion DAG created paused until its endpoint answers; the first
    answer unpauses it (when Airflow runs). `lakehouse up` runs this too. Exits non-zero if
    an endpoint did not answer."""
    report_probes(_settings(), only, strict=True)


def report_probes(settings: Settings, only: tuple[str, ...] = (), strict: bool = False) -> None:
    import subprocess

    from lakehouse.contracts import load_all
    from lakehouse.ingest import probe
    from lakehouse.stack import manager

    contracts = load_all()
    unknown = [s for s in only if s not in contracts]
    if unknown:
        raise LakehouseError(f"unknown source(s): {', '.join(unknown)}", f"known: {', '.join(contracts)}")
    failed = []
    for c in contracts.values():
        if only and c.id not in only:
            continue
        answered, detail = probe.probe(settings, c)
        probe.record(settings, c, answered, detail)
        click.echo(f"{c.id}: {'answered' if answered else 'NO ANSWER'}: {detail}", err=not answered)
        if not answered:
            failed.append(c.id)
    waiting = probe.to_unpause(settings, [c for c in contracts.values() if not only or c.id in only])
    airflow_up = bool(waiting) and any(r["healthy"] for r in manager.status(settings) if r["service"] == "airflow")
    for c in waiting:
        if not airflow_up:
            click.echo(f"ingest_{c.id}: its endpoint answered; Airflow is not running: the next probe with "
                       "Airflow up unpauses its DAG", err=True)
            continue
        from lakehouse.stack.services import airflow as runtime

        proc = subprocess.run([str(runtime.AIRFLOW_BIN), "dags", "unpause", f"ingest_{c.id}"], capture_output=True,
                              text=True, env=runtime.airflow_env(settings), cwd=runtime.REPO_ROOT)
        if proc.returncode == 0:
            probe.unpaused(settings, c)
            click.echo(f"ingest_{c.id}: its endpoint answered: unpaused", err=True)
        else:
            click.echo(f"ingest_{c.id}: its endpoint answered, but `airflow dags unpause` failed (the DAG may "
                       f"not be parsed yet; the next probe tries again): {proc.stderr.strip()[-200:]}", err=True)
    if failed and strict:
        raise LakehouseError(f"{len(failed)} endpoint(s) did not answer: {', '.join(failed)}",
                             "each line above says why; a new source's DAG stays paused until its endpoint answers")


@cli.group()
def batches() -> None:
    """Batches the contract's quality gate holds: list them, release or reject each one."""


@batches.command("held")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per held batch.")
def batches_held(as_json: bool) -> None:
    """List the batches held by the quality gate and waiting for a decision, oldest first:
    their valid rows are staged on the raw table, out of raw and the marts."""
    from spark_jobs.ingest import held_batches

    settings = _settings()
    rows = held_batches(settings)
    for r in rows:
        if as_json:
            import json

            click.echo(json.dumps(r, default=str, sort_keys=True))
        else:
            click.echo(f"{r['batch_id']}  held since {r['started_at']:%Y-%m-%d %H:%M:%S} UTC: {r['rows_valid']} "
                       f"valid, {r['rows_quarantined']} quarantined of {r['rows_in']}\n    {r['message']}")
    if not rows and not as_json:
        click.echo("no batch is held")


def _decide(batch_id: str, decision: str, by: str | None, reason: str) -> None:
    import getpass

    from lakehouse.contracts import load_all
    from lakehouse.stack import manager
    from spark_jobs.ingest import close_ingestors, open_ingestors

    settings = _settings()
    contracts = load_all()
    source = batch_id.split("/", 1)[0]
    if source not in contracts:
        raise LakehouseError(f"{batch_id!r}: no contract {source!r} (a batch id starts with its source)",
                             "take the id from `lakehouse batches held`")
    manager.require(settings, "postgres", "minio")
    (ing,) = open_ingestors(settings, [contracts[source]])
    try:
        result = ing.decide_held(batch_id, decision, by or getpass.getuser(), reason)
    finally:
        close_ingestors([ing])
    click.echo(f"{batch_id}: {result.line()}")


@batches.command("release")
@click.argument("batch_id")
@click.option("--by", help="Who decides [default: your login name]; recorded in the audit log.")
@click.option("--reason", default="", help="Why; recorded in the audit log.")
def batches_release(batch_id: str, by: str | None, reason: str) -> None:
    """Publish a held batch: its valid rows reach raw (as ingested now) and the next marts
    build. Recorded in audit.ingestion_log as `released`, with who decided."""
    _decide(batch_id, "released", by, reason)


@batches.command("reject")
@click.argument("batch_id")
@click.option("--by", help="Who decides [default: your login name]; recorded in the audit log.")
@click.option("--reason", default="", help="Why; recorded in the audit log.")
def batches_reject(batch_id: str, by: str | None, reason: str) -> None:
    """Never publish a held batch: its valid rows stay out of raw and the marts (its
    quarantined rows stay in quarantine). Recorded in audit.ingestion_log as `rejected`."""
    _decide(batch_id, "rejected", by, reason)


@cli.group()
def contracts() -> None:
    """Data contracts (contracts/*.yaml) and what is generated from them."""


@contracts.command("lint")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def contracts_lint(paths: tuple[Path, ...]) -> None:
    """Validate every contract (or the files given) as ODCS v3.2.0 and against the project's
    rules; print each source, or every problem with its file, its path in the file and the
    fix. Exits non-zero if any contract is invalid. Contracts are read from
    $LAKEHOUSE_CONTRACTS_DIR, else contracts/."""
    from lakehouse.contracts import ContractError, contracts_dir, lint, load_contract

    if paths:
        loaded, errors = {}, []
        for path in paths:
            try:
                c = load_contract(path)
                loaded[c.id] = c
            except ContractError as exc:
                errors.append(exc)
    else:
        loaded, errors = lint()
    for c in loaded.values():
        et = (f"event time {c.event_time.field}" + (f" [{c.event_time.format}]" if c.event_time.format else "")
              if c.event_time else "no event time")
        click.echo(f"ok {c.id} {c.version}: {len(c.fields)} fields, key ({', '.join(c.natural_key)}), {et}, "
                   f"partitioned by {c.partitioning}, owner {c.owner}")
    for exc in errors:
        click.echo(str(exc), err=True)
    if errors:
        raise LakehouseError(f"{len(errors)} contract problem(s) in {', '.join(map(str, paths)) or contracts_dir()}",
                             "each is listed above with its file, path and fix")


@contracts.command("diff")
def contracts_diff() -> None:
    """Compare every contract with the raw table it deployed (schema, contract version,
    required fields): what the next ingest adds in place, and what it would refuse (a
    breaking change without a new major version). Exits non-zero if it would refuse one."""
    from lakehouse.contracts import load_all
    from lakehouse.contracts.evolution import diff_lines
    from lakehouse.stack import manager

    settings = _settings()
    manager.require(settings, "postgres", "minio")
    refused = []
    for c in load_all().values():
        lines, refuses = diff_lines(settings, c)
        click.echo("\n".join(lines))
        if refuses:
            refused.append(c.id)
    if refused:
        raise LakehouseError(f"the next ingest of {', '.join(refused)} would refuse its contract's changes",
                             "raise the contract's major version to apply a breaking change, or revert it "
                             "(docs/contracts.md, \"Schema evolution\")")


@contracts.command("dbt-sources")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
def contracts_dbt_sources(output: str | None) -> None:
    """Print (or write) the dbt sources file (raw, quarantine, audit), generated from the contracts."""
    from lakehouse.dbt import sources_text

    text = sources_text(_settings())
    if output:
        with open(output, "w") as fh:
            fh.write(text)
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)


@cli.group()
def superset() -> None:
    """Superset: dashboards as code (superset_assets/), import, export, datasets from dbt."""


@superset.command("import")
@click.option("--assets", "root", type=click.Path(file_okay=False, exists=True),
              help="Assets folder [default: superset_assets/ of this checkout].")
def superset_import(root: str | None) -> None:
    """Check superset_assets/ against Trino's marts, then import it (re-importing duplicates nothing)."""
    from pathlib import Path

    from lakehouse.stack import manager
    from lakehouse.superset import assets

    settings = _settings()
    manager.require(settings, "trino", "superset")
    assets.import_assets(settings, root=Path(root) if root else assets.ASSETS, say=click.echo)


@superset.command("export")
@click.option("--to", "dest", type=click.Path(file_okay=False), required=True,
              help="Folder to write the assets to (superset_assets to update the repo).")
def superset_export(dest: str) -> None:
    """Write what Superset holds (databases, datasets, charts, dashboards) in the repo's layout."""
    from pathlib import Path

    from lakehouse.stack import manager
    from lakehouse.superset import assets

    settings = _settings()
    manager.require(settings, "superset")
    files = assets.export_assets(settings)
    assets.write_files(files, Path(dest))
    click.echo(f"wrote {len(files)} files to {dest}")


@superset.command("datasets")
@click.option("--check", is_flag=True, help="Exit 1 if superset_assets/datasets differs from what dbt generates.")
def superset_datasets(check: bool) -> None:
    """(Re)generate superset_assets/datasets from dbt's manifest and catalog (`dbt docs generate`)."""
    from lakehouse.superset import assets

    changed = assets.sync_datasets(check=check)
    for name in changed:
        click.echo(("differs: " if check else "wrote: ") + name)
    if check and changed:
        raise LakehouseError(f"{len(changed)} dataset file(s) differ from dbt's catalog",
                             "run `lakehouse superset datasets` and commit the result")
    if not changed:
        click.echo("datasets match dbt's catalog")


@superset.command("urls")
def superset_urls() -> None:
    """Print the dashboards' addresses and where the credentials are."""
    from lakehouse.superset import assets

    click.echo(assets.describe(_settings()))


@cli.group()
def bench() -> None:
    """Benchmarks; each prints `bench <name>: <value> <unit> (baseline ..., ratio ..., target ...)`."""


@bench.command("stack")
@click.option("--runs", default=3, show_default=True, help="Warm starts to time (median is reported).")
def bench_stack(runs: int) -> None:
    """Warm start to all healthy, and peak RSS per service, against bare starts."""
    from lakehouse.bench.stack import run

    run(_settings(), runs)


@bench.command("ingest")
@click.option("--runs", default=5, show_default=True, help="Runs per size for 10k and 100k rows.")
@click.option("--big-runs", default=1, show_default=True, help="Runs for 1M rows.")
@click.option("--sizes", default="10000,100000,1000000", show_default=True,
              help="Batch sizes in rows, comma-separated. Only a run of all three updates docs/benchmarks.md.")
def bench_ingest(runs: int, big_runs: int, sizes: str) -> None:
    """Ingest 10k, 100k and 1M rows end to end, against pyarrow JSON -> Parquet."""
    from lakehouse.bench.ingest import run

    try:
        wanted = tuple(int(x) for x in sizes.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{sizes!r}: expected row counts like 10000,100000", param_hint="--sizes")
    if not wanted or min(wanted) < 1:
        raise click.BadParameter(f"{sizes!r}: give at least one positive row count", param_hint="--sizes")
    run(runs, big_runs, wanted)


@bench.command("dbt")
@click.option("--runs", default=3, show_default=True, help="Incremental builds to time (one batch each).")
@click.option("--repeats", default=20, show_default=True, help="Runs of each dashboard query per engine.")
@click.option("--rows", type=int, help="Rows per batch [default: LAKEHOUSE_SIMULATOR_ROWS_PER_BATCH].")
def bench_dbt(runs: int, repeats: int, rows: int | None) -> None:
    """dbt full and incremental build times, dbt's overhead, and dashboard query p50/p95 on
    Trino against DuckDB over the same Iceberg data."""
    from lakehouse.bench.dbt import run

    run(runs, repeats, rows)


@bench.command("superset")
@click.option("--repeats", default=20, show_default=True, help="Loads of each dashboard per path.")
@click.option("--rows", type=int, help="Rows per batch [default: LAKEHOUSE_SIMULATOR_ROWS_PER_BATCH].")
def bench_superset(repeats: int, rows: int | None) -> None:
    """Dashboard chart-data time through Superset vs the same SQL sent directly to Trino."""
    from lakehouse.bench import superset as bench_ss

    bench_ss.run(repeats=repeats, rows=rows)


@bench.command("follow")
@click.option("--period", default=10.0, show_default=True, help="The simulator's publication period, seconds.")
@click.option("--cycles", default=3, show_default=True, help="Cycles to follow while dbt builds run.")
def bench_follow(period: float, cycles: int) -> None:
    """Missed batches and publication-to-commit lag of two sources followed at a fast period
    while dbt builds run back to back, against the same follower with no dbt running."""
    from lakehouse.bench.follow import run

    run(period, cycles)


@bench.command("airflow")
@click.option("--baseline-batches", default=3, show_default=True,
              help="Batches run through the no-scheduler baseline (ingest, then dbt build).")
@click.option("--also-periods", default="", metavar="S,S,...",
              help="Also run one scheduled cycle at each of these periods (seconds, each on a fresh "
                   "stack) and report the lowest period with no missed batch.")
def bench_airflow(baseline_batches: int, also_periods: str) -> None:
    """Airflow's queued-to-running overhead and batch-to-marts freshness over one cycle
    published every 30 s, against the same chain run without a scheduler."""
    from lakehouse.bench.airflow import run

    try:
        periods = tuple(float(x) for x in also_periods.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{also_periods!r}: expected seconds like 20,15", param_hint="--also-periods")
    if any(p < 10 for p in periods):
        raise click.BadParameter("the ingestion schedule's shortest period is 10 s", param_hint="--also-periods")
    run(baseline_batches, periods)


@bench.command("cpu")
@click.option("--periods", default=3, show_default=True, type=click.IntRange(min=1),
              help="Windows of one period to measure, in each of the two runs (the median is reported).")
@click.option("--period", default=300.0, show_default=True, type=click.FloatRange(min=10),
              help="Seconds between batches: the simulator's period and the ingestion DAGs' schedule.")
def bench_cpu(periods: int, period: float) -> None:
    """CPU used by the whole platform per publication period (two sources, a batch every
    5 minutes by default), against the same stack with the scheduler stopped. Takes
    2 x PERIODS x PERIOD seconds, plus the stack's start."""
    from lakehouse.bench.cpu import run

    run(periods, period)


def main() -> None:
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except LakehouseError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
