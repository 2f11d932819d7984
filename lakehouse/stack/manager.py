"""up / down / status / logs / clean for the native stack.

Scope: starts servers in order (PostgreSQL, MinIO, Trino), each only after the previous
ones pass their health check, provisioning between them; stops them in reverse. Never
deletes state except in `clean`, which asks first.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import xmlrpc.client

import psutil

from lakehouse.errors import PreflightError, StackError
from lakehouse.settings import Settings
from lakehouse.stack import artifacts, doctor, provision, supervisor
from lakehouse.superset import runtime as superset_runtime
from lakehouse.orchestration import runtime as airflow_runtime
from lakehouse.stack.services import (HEALTH, ORDER, STAGES, Service, all_services, init_postgres, pg_data,
                                      service_url)

RUNNING_STATES = {"RUNNING", "STARTING"}


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _stack_env(settings: Settings) -> dict[str, str]:
    """Environment supervisord passes to every server: the settings, plus MinIO's root."""
    return {**settings.engine_env(),
            "MINIO_ROOT_USER": settings.minio_root_user.get_secret_value(),
            "MINIO_ROOT_PASSWORD": settings.minio_root_password.get_secret_value()}


def stale_processes(settings: Settings) -> list[psutil.Process]:
    """Processes of an earlier run of this stack (their command line names our data
    folder), e.g. left behind when supervisord was killed with SIGKILL."""
    marker = str(settings.data_path)
    airflow_home = str(settings.airflow_home)
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid == os.getpid():
            continue
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            # Airflow retitles its processes ("airflow scheduler -- ..."): know them by their home
            ours = marker in cmd or ("airflow" in cmd and proc.environ().get("AIRFLOW_HOME") == airflow_home)
        except psutil.Error:
            continue
        if ours:
            found.append(proc)
    return found


def clear_stale(settings: Settings) -> None:
    """Make a start after a crash or kill -9 safe: end leftovers, drop stale pid files."""
    procs = stale_processes(settings)
    if procs:
        say(f"  found {len(procs)} leftover process(es) of an earlier run: "
            + ", ".join(f"{p.pid}" for p in procs) + "; stopping them")
        for p in procs:
            try:
                p.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=20)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=10)
    for stale in (supervisor.pid_path(settings), supervisor.socket_path(settings)):
        stale.unlink(missing_ok=True)
    pm_pid = pg_data(settings) / "postmaster.pid"
    if pm_pid.exists():
        try:
            pid = int(pm_pid.read_text().splitlines()[0])
            alive = psutil.pid_exists(pid) and "postgres" in psutil.Process(pid).name()
        except (OSError, ValueError, IndexError, psutil.Error):
            alive = False
        if not alive:
            pm_pid.unlink(missing_ok=True)


def _prepare(settings: Settings) -> list[Service]:
    for d in (settings.data_path, settings.run_path, settings.log_path):
        d.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.data_path, 0o755)  # the postgres OS user must traverse it
    say("- checking downloads (cached after the first run) ...")
    artifacts.ensure_all(settings)
    superset_runtime.ensure_venv(settings, say=say)
    init_postgres(settings)
    return all_services(settings)


def _preflight(settings: Settings, running: bool) -> None:
    ours: set[int] = set()
    if running:
        ours = set(doctor.stack_ports(settings).values())
    failed = [c for c in doctor.run_checks(settings, ours) if not c.ok]
    if failed:
        raise PreflightError("preflight failed:\n" + doctor.format_checks(failed),
                             "fix the items above (`make doctor` lists every check)")


def _state(settings: Settings, name: str) -> str:
    try:
        return supervisor.client(settings).supervisor.getProcessInfo(name)["statename"]
    except (OSError, xmlrpc.client.Error):
        return "UNKNOWN"


def _log_tail(settings: Settings, name: str, lines: int = 25) -> str:
    path = settings.log_path / f"{name}.log"
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _wait_healthy(settings: Settings, svc: Service) -> float:
    t0 = time.monotonic()
    last_report = t0
    while True:
        ok, detail = svc.health()
        state = _state(settings, svc.name)
        # Healthy and past supervisord's startsecs (RUNNING, not STARTING): a fast service
        # answers before that, and `status` right after `up` must then see it RUNNING.
        if ok and state == "RUNNING":
            return time.monotonic() - t0
        if state in {"FATAL", "EXITED", "BACKOFF", "STOPPED"}:
            raise StackError(f"{svc.name} stopped while starting (state {state}); last log lines:\n"
                             + _log_tail(settings, svc.name),
                             f"full log: {settings.log_path / (svc.name + '.log')}")
        if time.monotonic() - t0 > svc.start_timeout:
            raise StackError(f"{svc.name} not healthy after {svc.start_timeout}s ({detail}); last log lines:\n"
                             + _log_tail(settings, svc.name),
                             f"full log: {settings.log_path / (svc.name + '.log')}")
        if time.monotonic() - last_report > 15:
            say(f"  ... waiting for {svc.name} ({detail}, {time.monotonic() - t0:.0f}s)")
            last_report = time.monotonic()
        time.sleep(0.5)


def _superset_after(settings: Settings) -> None:
    """Users always; the dashboards once the marts they read exist (else say how).

    Before the first `dbt build` there are no marts, which is normal, not an error. Once
    they exist, an import that fails is one: `up` stops with the reason.
    """
    from lakehouse.superset import assets

    superset_runtime.ensure_users(settings)
    if not assets.marts_built(settings):
        say("  Superset is up; its dashboards are not imported yet, because the marts are not built.\n"
            "  -> run `make demo` (or `lakehouse dbt build`), then `make superset-import`")
        return
    assets.import_assets(settings, say=lambda m: say("  " + m))


# Before a service's first start, and after it is healthy.
PREPARE_BEFORE = {"superset": lambda s: superset_runtime.initialize(s, say=say),
                  "airflow-api": lambda s: airflow_runtime.initialize(s, say=say)}
PROVISION_AFTER = {"postgres": provision.provision_postgres, "minio": provision.provision_minio,
                   "superset": _superset_after}


def up(settings: Settings) -> dict[str, float]:
    """Start the stack (idempotent). Returns seconds each service took to become healthy."""
    t0 = time.monotonic()
    running = supervisor.is_running(settings)
    _preflight(settings, running)
    services = {s.name: s for s in _prepare(settings)}
    if not running:
        clear_stale(settings)
        supervisor.render_conf(settings, list(services.values()))
        supervisor.start_daemon(settings, _stack_env(settings))
    rpc = supervisor.client(settings)
    timings: dict[str, float] = {}
    for stage in STAGES:
        for name in stage:
            if _state(settings, name) not in RUNNING_STATES:
                if name in PREPARE_BEFORE:
                    PREPARE_BEFORE[name](settings)
                say(f"- starting {name} ...")
                try:
                    rpc.supervisor.startProcess(name, False)
                except xmlrpc.client.Fault as exc:
                    raise StackError(f"supervisord could not start {name}: {exc.faultString}\n"
                                     + _log_tail(settings, name),
                                     f"full log: {settings.log_path / (name + '.log')}") from exc
        t_stage = time.monotonic()
        for name in stage:
            svc = services[name]
            _wait_healthy(settings, svc)
            timings[name] = time.monotonic() - t_stage
            say(f"  {name} healthy in {timings[name]:.1f}s  ({svc.url})")
            if name in PROVISION_AFTER:
                PROVISION_AFTER[name](settings)
    timings["total"] = time.monotonic() - t0
    say(f"stack up in {timings['total']:.1f}s")
    return timings


def down(settings: Settings) -> bool:
    """Stop every service in reverse order, then supervisord. False if nothing ran."""
    if not supervisor.is_running(settings):
        leftovers = stale_processes(settings)
        if leftovers:
            clear_stale(settings)
            return True
        return False
    rpc = supervisor.client(settings)
    for name in reversed(ORDER):
        if _state(settings, name) in RUNNING_STATES | {"BACKOFF"}:
            say(f"- stopping {name} ...")
            try:
                rpc.supervisor.stopProcess(name, True)
            except xmlrpc.client.Fault as exc:
                say(f"  {name}: {exc.faultString}")
    pid = supervisor.daemon_pid(settings)
    try:
        rpc.supervisor.shutdown()
    except (OSError, xmlrpc.client.Error):
        pass
    if pid:
        try:
            psutil.Process(pid).wait(timeout=30)
        except psutil.NoSuchProcess:
            pass
        except psutil.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
    say("stack stopped (state kept in " + str(settings.data_path) + ")")
    return True


def status(settings: Settings) -> list[dict]:
    """One row per service: supervisor state, pid, health check result, address."""
    info = {}
    if supervisor.is_running(settings):
        info = {p["name"]: p for p in supervisor.client(settings).supervisor.getAllProcessInfo()}
    rows = []
    for name in ORDER:
        p = info.get(name, {})
        state = p.get("statename", "DOWN")
        healthy, detail = HEALTH[name](settings) if state == "RUNNING" else (False, "-")
        rows.append({"service": name, "state": state, "pid": p.get("pid") or "-",
                     "healthy": healthy, "detail": detail, "url": service_url(settings, name)})
    return rows


def require(settings: Settings, *names: str) -> None:
    """Fail with a clear message unless these services answer their health checks."""
    down = [(n, HEALTH[n](settings)[1]) for n in names if not HEALTH[n](settings)[0]]
    if down:
        raise StackError("not running: " + ", ".join(f"{n} at {service_url(settings, n)} ({why})"
                                                    for n, why in down),
                         "start the stack with `make up` (or `lakehouse up`); `make status` shows it")


def logs(settings: Settings, service: str | None, follow: bool, lines: int) -> None:
    names = [service] if service else list(ORDER) + ["supervisord"]
    paths = [settings.log_path / f"{n}.log" for n in names]
    missing = [p for p in paths if not p.exists()]
    if service and missing:
        raise StackError(f"no log for {service} at {missing[0]}", "has the stack been started (`make up`)?")
    paths = [p for p in paths if p.exists()]
    if not paths:
        raise StackError(f"no logs in {settings.log_path}", "start the stack first: make up")
    cmd = ["tail", "-n", str(lines)] + (["-F"] if follow else []) + [str(p) for p in paths]
    try:
        subprocess.run(cmd)
    except KeyboardInterrupt:
        pass


def clean(settings: Settings) -> None:
    """Delete the data folder (after `down`). The caller asks for confirmation."""
    down(settings)
    if settings.data_path.exists():
        shutil.rmtree(settings.data_path)
