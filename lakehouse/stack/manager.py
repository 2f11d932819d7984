"""up / down / status / logs / clean for the native stack, driven by the registry.

Scope: starts the selected services (a profile, or named services, with everything they
depend on). A service starts as soon as every service it depends on is ready, so services
with no order between them start together; each is ready once all its programs pass their
health checks and its provisioning ran. `down` stops them in reverse. A stack only ever
stops or cleans its own processes: those whose environment carries `LAKEHOUSE_STACK` equal
to its data folder, exactly. Never deletes state except in `clean`, which asks first.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import xmlrpc.client
from typing import TYPE_CHECKING, Iterable

import psutil

from lakehouse.errors import PreflightError, StackError
from lakehouse.stack import artifacts, doctor, registry, supervisor
from lakehouse.stack.checks import private_dir
from lakehouse.stack.registry import Program, Registry, Service

if TYPE_CHECKING:
    from lakehouse.settings import Settings

RUNNING_STATES = {"RUNNING", "STARTING"}
_print_lock = threading.Lock()


def say(msg: str) -> None:
    with _print_lock:
        print(msg, file=sys.stderr, flush=True)


# ---- which processes are ours ----------------------------------------------------------

def stack_processes(settings: Settings) -> list[psutil.Process]:
    """Every live process of this stack: its environment names our data folder exactly
    (supervisord sets LAKEHOUSE_STACK for itself and every program; children inherit it).
    Another stack, even one whose folder name starts with ours, is never matched."""
    tag = str(settings.data_path)
    me = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    tagged: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["pid"]):
        if proc.pid in me:
            continue
        try:
            if proc.environ().get(supervisor.STACK_VAR) == tag and proc.status() != psutil.STATUS_ZOMBIE:
                tagged[proc.pid] = proc
        except psutil.Error:
            continue
    # A child of ours is ours, even if it rewrote its environment (PostgreSQL's backends
    # retitle themselves over it).
    for proc in list(tagged.values()):
        try:
            for child in proc.children(recursive=True):
                if child.pid not in me and child.status() != psutil.STATUS_ZOMBIE:
                    tagged.setdefault(child.pid, child)
        except psutil.Error:
            continue
    return list(tagged.values())


def end_processes(procs: list[psutil.Process], timeout: float = 20) -> None:
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=10)


def clear_stale(settings: Settings) -> None:
    """Make a start after a crash or kill -9 safe: end this stack's leftovers (servers
    orphaned by a killed supervisord, gunicorn and JVMs included), drop stale files."""
    procs = stack_processes(settings)
    if procs:
        say(f"  found {len(procs)} leftover process(es) of an earlier run of this stack: "
            + ", ".join(f"{p.pid}" for p in procs) + "; stopping them")
        end_processes(procs)
    for stale in (supervisor.pid_path(settings), supervisor.socket_path(settings)):
        stale.unlink(missing_ok=True)


# ---- preparing ----------------------------------------------------------------------------

def prepare_folders(settings: Settings) -> None:
    """The data folder is not world-readable: 0711 (other OS users, such as `postgres`,
    may pass through to a folder of their own); run/ and logs/ are 0700, and everything
    `up` and the servers create in it is private (umask 077, also set for supervisord)."""
    os.umask(0o077)
    settings.data_path.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.data_path, 0o711)
    private_dir(settings.run_path)
    private_dir(settings.log_path)


def _preflight(settings: Settings, reg: Registry, names: list[str], running: bool) -> None:
    ours: set[int] = set()
    if running:
        ours = set(doctor.stack_ports(settings, reg=reg).values())
    else:  # servers orphaned by a killed supervisord hold their ports: ours, ended below
        mine = {p.pid for p in stack_processes(settings)}
        if mine:
            ours = {port for port in doctor.stack_ports(settings, reg=reg).values()
                    if doctor.port_owner_pid(port) in mine}
    failed = [c for c in doctor.run_checks(settings, ours, names, reg) if not c.ok]
    if failed:
        raise PreflightError("preflight failed:\n" + doctor.format_checks(failed),
                             "fix the items above (`make doctor` lists every check); nothing was started")


def selection_path(settings: Settings):
    return settings.run_path / "selection.json"


def selected(settings: Settings, reg: Registry) -> list[str]:
    """The services `up` was asked for since supervisord started (with dependencies)."""
    try:
        names = json.loads(selection_path(settings).read_text())
    except (OSError, ValueError):
        return []
    return [n for n in reg.names if n in names]


def _record_selection(settings: Settings, reg: Registry, names: list[str]) -> None:
    merged = set(selected(settings, reg)) | set(names)
    selection_path(settings).write_text(json.dumps([n for n in reg.names if n in merged]))


# ---- supervisord state ----------------------------------------------------------------------

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


class _Aborted(Exception):
    """Another service failed to start: stop waiting."""


def _wait_healthy(settings: Settings, prog: Program, failed: threading.Event) -> float:
    t0 = time.monotonic()
    last_report = t0
    while True:
        if failed.is_set():
            raise _Aborted()
        ok, detail = prog.health(settings)
        state = _state(settings, prog.name)
        # Healthy and past supervisord's startsecs (RUNNING, not STARTING): a fast program
        # answers before that, and `status` right after `up` must then see it RUNNING.
        if ok and state == "RUNNING":
            return time.monotonic() - t0
        if state in {"FATAL", "EXITED", "BACKOFF", "STOPPED"}:
            raise StackError(f"{prog.name} stopped while starting (state {state}); last log lines:\n"
                             + _log_tail(settings, prog.name),
                             f"full log: {settings.log_path / (prog.name + '.log')}")
        if time.monotonic() - t0 > prog.start_timeout:
            raise StackError(f"{prog.name} not healthy after {prog.start_timeout}s ({detail}); last log lines:\n"
                             + _log_tail(settings, prog.name),
                             f"full log: {settings.log_path / (prog.name + '.log')}")
        if time.monotonic() - last_report > 15:
            say(f"  ... waiting for {prog.name} ({detail}, {time.monotonic() - t0:.0f}s)")
            last_report = time.monotonic()
        time.sleep(0.5)


def _provision_stamp(settings: Settings, svc: Service):
    return settings.run_path / f"provisioned-{svc.name}"


def _settings_digest(settings: Settings) -> str:
    return hashlib.sha256(json.dumps(settings.engine_env(), sort_keys=True).encode()).hexdigest()


def _start_service(settings: Settings, reg: Registry, svc: Service, ready: dict[str, threading.Event],
                   failed: threading.Event, timings: dict[str, float]) -> None:
    for dep in svc.depends_on:
        while not ready[dep].wait(0.2):
            if failed.is_set():
                raise _Aborted()
    t0 = time.monotonic()
    rpc = supervisor.client(settings)
    started_now = any(_state(settings, p.name) not in RUNNING_STATES for p in svc.programs)
    if started_now and svc.initialize:
        svc.initialize(settings, say)
    done: set[str] = set()
    pending = list(svc.programs)
    while pending:
        wave = [p for p in pending if set(p.after) <= done]
        for prog in wave:
            if _state(settings, prog.name) not in RUNNING_STATES:
                say(f"- starting {prog.name} ...")
                try:
                    rpc.supervisor.startProcess(prog.name, False)
                except xmlrpc.client.Fault as exc:
                    raise StackError(f"supervisord could not start {prog.name}: {exc.faultString}\n"
                                     + _log_tail(settings, prog.name),
                                     f"full log: {settings.log_path / (prog.name + '.log')}") from exc
        for prog in wave:
            _wait_healthy(settings, prog, failed)
            done.add(prog.name)
        pending = [p for p in pending if p.name not in done]
    stamp = _provision_stamp(settings, svc)
    digest = _settings_digest(settings)
    if svc.provision and (started_now or not stamp.exists() or stamp.read_text() != digest):
        svc.provision(settings, say)
    stamp.write_text(digest)
    timings[svc.name] = time.monotonic() - t0
    url = svc.programs[0].url(settings) if svc.programs[0].url else ""
    say(f"  {svc.name} ready in {timings[svc.name]:.1f}s  {url}")
    ready[svc.name].set()


def _start(settings: Settings, reg: Registry, names: list[str]) -> dict[str, float]:
    """One thread per service; each waits for its dependencies to be ready."""
    ready = {n: threading.Event() for n in names}
    failed = threading.Event()
    errors: list[BaseException] = []
    timings: dict[str, float] = {}

    def run(name: str) -> None:
        try:
            _start_service(settings, reg, reg.services[name], ready, failed, timings)
        except _Aborted:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported below, in the caller's thread
            errors.append(exc)
            failed.set()

    threads = [threading.Thread(target=run, args=(n,), name=f"up-{n}", daemon=True) for n in names]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    return timings


def _sync_programs(settings: Settings, reg: Registry) -> None:
    """supervisord is running: re-render its config, and make programs it does not know
    yet (a server added since it started) or that changed while stopped startable."""
    supervisor.render_conf(settings, reg)
    rpc = supervisor.client(settings)
    try:
        added, changed, _removed = rpc.supervisor.reloadConfig()[0]
    except xmlrpc.client.Fault as exc:
        raise StackError(f"supervisord refused its new config: {exc.faultString}",
                         f"see {supervisor.conf_path(settings)}; `make down && make up` restarts clean")
    for name in added:
        rpc.supervisor.addProcessGroup(name)
    for name in changed:
        if _state(settings, name) in RUNNING_STATES:
            say(f"  note: {name} runs with its previous configuration; `make down && make up` applies the new one")
            continue
        rpc.supervisor.removeProcessGroup(name)
        rpc.supervisor.addProcessGroup(name)


def up(settings: Settings, services: Iterable[str] | None = None, profile: str | None = None) -> dict[str, float]:
    """Start the selected services and what they depend on (idempotent). Default: every
    service. Returns seconds each service took to be ready, and the total."""
    t0 = time.monotonic()
    reg = registry.load()
    chosen = list(services or []) + (reg.profile(profile) if profile else [])
    names = reg.closure(chosen or reg.names)
    running = supervisor.is_running(settings)
    _preflight(settings, reg, names, running)
    prepare_folders(settings)
    say("- checking downloads and prepared state (cached after the first run) ...")
    artifacts.client_artifacts(settings)
    for name in names:
        if reg.services[name].prepare:
            reg.services[name].prepare(settings, say)
    if not running:
        clear_stale(settings)
        selection_path(settings).unlink(missing_ok=True)
        supervisor.render_conf(settings, reg)
        supervisor.start_daemon(settings)
    else:
        _sync_programs(settings, reg)
    _record_selection(settings, reg, names)
    say("- start order: " + " | ".join(", ".join(w) for w in reg.stages(names))
        + "  (services in one group start together)")
    timings = _start(settings, reg, names)
    timings["total"] = time.monotonic() - t0
    say(f"stack up in {timings['total']:.1f}s ({', '.join(names)})")
    return timings


# ---- stopping -----------------------------------------------------------------------------

def _stop_order(reg: Registry) -> list[list[str]]:
    """Program names in waves, dependents first: services in reverse start waves, and
    within a service the programs that wait for others before those."""
    waves: list[list[str]] = []
    for stage in reversed(reg.stages()):
        late = [p.name for s in stage for p in reg.services[s].programs if p.after]
        early = [p.name for s in stage for p in reg.services[s].programs if not p.after]
        waves += [w for w in (late, early) if w]
    return waves


def down(settings: Settings) -> bool:
    """Stop every program (dependents first), then supervisord, then any leftover process
    of this stack. False if nothing of this stack was running (and nothing was touched)."""
    reg = registry.load()
    if not supervisor.is_running(settings):
        leftovers = stack_processes(settings)
        if leftovers:
            say(f"supervisord is not running, but {len(leftovers)} process(es) of this stack are; stopping them")
            end_processes(leftovers)
            return True
        return False
    rpc = supervisor.client(settings)
    for wave in _stop_order(reg):
        live = [n for n in wave if _state(settings, n) in RUNNING_STATES | {"BACKOFF"}]
        for name in live:
            say(f"- stopping {name} ...")
            try:
                rpc.supervisor.stopProcess(name, False)
            except xmlrpc.client.Fault as exc:
                say(f"  {name}: {exc.faultString}")
        deadline = time.monotonic() + max([_prog(reg, n).stop_wait for n in live] or [0]) + 15
        while live and time.monotonic() < deadline:
            live = [n for n in live if _state(settings, n) not in {"STOPPED", "EXITED", "FATAL", "UNKNOWN"}]
            time.sleep(0.3)
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
    leftovers = stack_processes(settings)
    if leftovers:  # e.g. a task's Spark JVM that left its process group
        say(f"  ending {len(leftovers)} leftover process(es) of this stack")
        end_processes(leftovers)
    say("stack stopped (state kept in " + str(settings.data_path) + ")")
    return True


def _prog(reg: Registry, name: str) -> Program:
    return next(p for _, p in reg.programs() if p.name == name)


# ---- status, require, logs, clean ----------------------------------------------------------

def status(settings: Settings, reg: Registry | None = None) -> list[dict]:
    """One row per program: supervisor state, pid, health, address, and whether it belongs
    to what `up` was asked to start (`selected`)."""
    reg = reg or registry.load()
    info = {}
    chosen: set[str] = set()
    if supervisor.is_running(settings):
        info = {p["name"]: p for p in supervisor.client(settings).supervisor.getAllProcessInfo()}
        chosen = set(selected(settings, reg))
    rows = []
    for svc, prog in reg.programs():
        p = info.get(prog.name, {})
        state = p.get("statename", "DOWN")
        healthy, detail = prog.health(settings) if state == "RUNNING" else (False, "-")
        rows.append({"service": svc.name, "program": prog.name, "state": state, "pid": p.get("pid") or "-",
                     "healthy": healthy, "detail": detail, "selected": svc.name in chosen,
                     "url": prog.url(settings) if prog.url else ""})
    return rows


def require(settings: Settings, *names: str) -> None:
    """Fail with a clear message unless these services (or programs) answer their health
    checks."""
    reg = registry.load()
    progs = []
    for name in names:
        if name in reg.services:
            progs += list(reg.services[name].programs)
        else:
            progs.append(_prog(reg, name))
    down_ = [(p, p.health(settings)[1]) for p in progs if not p.health(settings)[0]]
    if down_:
        raise StackError("not running: " + ", ".join(
            f"{p.name} at {p.url(settings) if p.url else '?'} ({why})" for p, why in down_),
            "start the stack with `make up` (or `lakehouse up`); `make status` shows it")


def log_names(reg: Registry | None = None) -> list[str]:
    return [*(reg or registry.load()).program_names(), "supervisord"]


def logs(settings: Settings, name: str | None, follow: bool, lines: int) -> None:
    names = [name] if name else log_names()
    paths = [settings.log_path / f"{n}.log" for n in names]
    missing = [p for p in paths if not p.exists()]
    if name and missing:
        raise StackError(f"no log for {name} at {missing[0]}", "has the stack been started (`make up`)?")
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

