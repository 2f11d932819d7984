"""The service registry: every server of the native stack, each described once, in its own
module under `lakehouse/stack/services/`.

A service module defines `SERVICE = Service(...)`: its processes (command, working folder,
OS user, stop signal), the settings it owns (a pydantic fragment of `Settings`: ports,
secrets, tunables), its health checks, the services it depends on, its provisioning
(databases and roles, S3 users and policies, migrations, one-off imports), its address for
`status`, and the secrets each of its processes may see.

Everything else is derived from the registry, never listed again: the start order (a
topological sort of `depends_on`), the profiles, the preflight's port list, `status`, the
`logs` choices, the test and bench stacks' ports, the check that `.env.example` lists every
setting, and the supervisord programs with their environments.

Scope: imports the service modules and checks them; starts nothing. A module that breaks a
rule (no health check, an unknown dependency, a cycle, two services with one name) is
refused when the registry loads, with the module named.

Dependencies point one way: the stack core (manager, supervisor, doctor) reads the registry
and never imports a service module by name; service modules import the core's helpers.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Callable, Iterable

from lakehouse.errors import LakehouseError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from lakehouse.settings import Settings

SERVICES_PACKAGE = "lakehouse.stack.services"
# Profiles, as in compose/docker-compose.yml: `core` services run in every profile; `all`
# is every service. Any other profile name is whatever the service modules declare.
CORE = "core"
ALL = "all"

Health = Callable[["Settings"], "tuple[bool, str]"]
Say = Callable[[str], None]


class RegistryError(LakehouseError):
    """A service module breaks a rule of the registry; the message names the module."""


@dataclass(frozen=True)
class Database:
    """A PostgreSQL database and its owner role; the values are settings fields."""

    name: str
    user: str
    password: str


@dataclass(frozen=True)
class S3User:
    """A MinIO user: it reads the whole warehouse bucket and writes only `writes` prefixes."""

    access_key: str  # settings field holding the access key
    secret_key: str  # settings field holding the secret
    writes: tuple[str, ...] = ()
    purpose: str = ""


@dataclass(frozen=True)
class Program:
    """One supervised process of a service."""

    name: str                                        # supervisord program, `logs` choice
    command: Callable[["Settings"], list[str]]       # pure: builds paths, downloads nothing
    health: Health | None
    env: Callable[["Settings"], dict[str, str]] | None = None  # beyond the non-secret settings
    # Settings fields (secrets) this process may see; None = every secret its service declares.
    secrets: tuple[str, ...] | None = None
    user: Callable[[], str | None] | None = None     # OS user; None = the caller's
    workdir: Callable[["Settings"], Path] | None = None  # default: the data folder
    stop_signal: str = "TERM"
    stop_wait: int = 30                              # seconds before SIGKILL to the group
    start_timeout: int = 120                         # seconds to become healthy
    url: Callable[["Settings"], str] | None = None   # address shown by `status`
    after: tuple[str, ...] = ()                      # programs of this service healthy first


@dataclass(frozen=True)
class Service:
    name: str
    description: str
    programs: tuple[Program, ...]
    profile: str = CORE
    depends_on: tuple[str, ...] = ()
    settings: type["BaseModel"] | None = None        # the settings fragment this service owns
    ports: tuple[str, ...] = ()                      # settings fields holding its ports
    # Ports derived from a setting (e.g. "the port after it"): env-var label -> port.
    extra_ports: Callable[["Settings"], dict[str, int]] | None = None
    secrets: tuple[str, ...] = ()                    # settings fields its processes may see
    databases: tuple[Database, ...] = ()             # created by the PostgreSQL service
    s3_users: tuple[S3User, ...] = ()                # created by the MinIO service
    # Hooks, each `(settings, say)`. prepare: before the stack starts (downloads, venvs,
    # data folders; no other service is up). initialize: before its programs start, once
    # its dependencies are ready (schema migrations). provision: once its programs are
    # healthy and before any service that depends on it starts (databases, users, imports).
    # Preflight checks of its own: (label, check) where check(settings) returns a detail
    # line or raises a LakehouseError saying what is missing and what to do.
    checks: tuple[tuple[str, Callable[["Settings"], str]], ...] = ()
    prepare: Callable[["Settings", Say], None] | None = None
    initialize: Callable[["Settings", Say], None] | None = None
    provision: Callable[["Settings", Say], None] | None = None
    module: str = field(default="", compare=False)   # filled in by the loader


def _check(ok: bool, module: str, message: str, hint: str) -> None:
    if not ok:
        raise RegistryError(f"service module {module}: {message}", hint)


class Registry:
    """The loaded services, in a start order that respects every dependency."""

    def __init__(self, services: Iterable[Service]):
        services = list(services)
        by_name: dict[str, Service] = {}
        programs: dict[str, str] = {}
        for svc in services:
            mod = svc.module or svc.name
            if svc.name in by_name:
                _check(False, mod, f"service name {svc.name!r} is taken by {by_name[svc.name].module}",
                       "give each service a unique name")
            _check(bool(svc.programs), mod, f"service {svc.name!r} declares no program",
                   "declare at least one Program(...) in its `programs`")
            _check(bool(svc.profile) and svc.profile != ALL, mod, f"profile {svc.profile!r} is not a profile name",
                   f"use {CORE!r} or a compose profile name such as 'bi'")
            local = {p.name for p in svc.programs}
            for prog in svc.programs:
                _check(prog.health is not None, mod, f"program {prog.name!r} has no health check",
                       "give it `health=` (a function of the settings returning (ok, detail))")
                _check(prog.name not in programs, mod,
                       f"program name {prog.name!r} is also used by {programs.get(prog.name)}",
                       "program names are supervisord names and must be unique across services")
                programs[prog.name] = mod
                unknown = set(prog.after) - local
                _check(not unknown, mod, f"program {prog.name!r} waits for unknown program(s) {sorted(unknown)}",
                       f"`after` names programs of the same service: {sorted(local)}")
            by_name[svc.name] = svc
        for svc in services:
            unknown = [d for d in svc.depends_on if d not in by_name]
            _check(not unknown, svc.module or svc.name,
                   f"service {svc.name!r} depends on unknown service(s) {', '.join(unknown)}",
                   f"known services: {', '.join(sorted(by_name))}")
        self.services: dict[str, Service] = {n: by_name[n] for n in _toposort(by_name)}

    # ---- order --------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self.services)

    def closure(self, names: Iterable[str]) -> list[str]:
        """The named services and everything they depend on, in start order."""
        wanted: set[str] = set()
        todo = list(names)
        while todo:
            name = todo.pop()
            if name not in self.services:
                raise LakehouseError(f"unknown service {name!r}", f"known services: {', '.join(self.services)}")
            if name not in wanted:
                wanted.add(name)
                todo.extend(self.services[name].depends_on)
        return [n for n in self.services if n in wanted]

    def stages(self, names: Iterable[str] | None = None) -> list[list[str]]:
        """Start waves: a service starts once every service it depends on is ready, so the
        services of one wave have no order between them and start together."""
        names = set(self.names if names is None else names)
        level: dict[str, int] = {}
        for name in self.services:  # topological order: dependencies come first
            if name in names:
                deps = [level[d] for d in self.services[name].depends_on if d in level]
                level[name] = 1 + max(deps, default=-1)
        waves: list[list[str]] = [[] for _ in range(1 + max(level.values(), default=-1))]
        for name, lvl in level.items():
            waves[lvl].append(name)
        return waves

    def dependents(self, name: str) -> list[str]:
        return [n for n, s in self.services.items() if name in s.depends_on]

    # ---- profiles ---------------------------------------------------------------------
    def profiles(self) -> dict[str, list[str]]:
        """Profile name -> the services it starts (with their dependencies), in start order.
        A profile is the core plus the services that name it; `all` is every service."""
        core = [n for n, s in self.services.items() if s.profile == CORE]
        named = sorted({s.profile for s in self.services.values()} - {CORE})
        out = {CORE: self.closure(core)}
        for prof in named:
            out[prof] = self.closure(core + [n for n, s in self.services.items() if s.profile == prof])
        out[ALL] = self.names
        return out

    def profile(self, name: str) -> list[str]:
        known = self.profiles()
        if name not in known:
            raise LakehouseError(f"unknown profile {name!r}",
                                 f"known profiles: {', '.join(known)} (`lakehouse services` lists what each starts)")
        return known[name]

    # ---- programs ---------------------------------------------------------------------
    def programs(self, names: Iterable[str] | None = None) -> list[tuple[Service, Program]]:
        names = set(self.names if names is None else names)
        return [(s, p) for n, s in self.services.items() if n in names for p in s.programs]

    def program_names(self) -> list[str]:
        return [p.name for _, p in self.programs()]

    def service_of(self, program: str) -> Service:
        for svc, prog in self.programs():
            if prog.name == program:
                return svc
        raise LakehouseError(f"unknown program {program!r}", f"known: {', '.join(self.program_names())}")

    def program_secrets(self, svc: Service, prog: Program) -> tuple[str, ...]:
        return svc.secrets if prog.secrets is None else prog.secrets

    # ---- settings ------------------------------------------------------------------------
    def fragments(self) -> list[type["BaseModel"]]:
        return [s.settings for s in self.services.values() if s.settings is not None]

    def settings_class(self) -> type:
        """`Settings` for this registry: the core settings joined with every service's
        fragment. (lakehouse.settings.Settings is this, for the loaded registry.)"""
        from lakehouse.settings import CoreSettings

        return type("Settings", (CoreSettings, *self.fragments()), {
            "__doc__": "Every variable of `.env.example`, typed: the core settings and each "
                       "service's fragment. Field `x` is env var `LAKEHOUSE_X`.",
            "__module__": "lakehouse.settings"})

    def port_fields(self) -> dict[str, str]:
        """Settings field -> service, for every port a service declares."""
        return {f: s.name for s in self.services.values() for f in s.ports}

    def ports(self, settings: "Settings", names: Iterable[str] | None = None) -> dict[str, int]:
        """Every port the services listen on, keyed by the variable that sets it."""
        out: dict[str, int] = {}
        for n in (self.names if names is None else names):
            svc = self.services[n]
            for f in svc.ports:
                out[_env(f)] = getattr(settings, f)
            if svc.extra_ports:
                out.update(svc.extra_ports(settings))
        return out

    def offset_ports(self, offset: int) -> dict[str, str]:
        """The port variables of another stack on this machine (tests: +10000, benches:
        +20000): each default moved by `offset`, so no two stacks share a port."""
        fields = self.settings_class().model_fields
        out = {}
        for f in self.port_fields():
            default = fields[f].default
            out[_env(f)] = str(int(default) + offset)
        return out

    def databases(self) -> list[tuple[Service, Database]]:
        return [(s, d) for s in self.services.values() for d in s.databases]

    def s3_users(self) -> list[tuple[Service, S3User]]:
        return [(s, u) for s in self.services.values() for u in s.s3_users]


def empty_is_none(v):
    """An empty value in the env file means "auto-detect / use the default"."""
    return None if v in ("", None) else v


def empty_means_default(*fields: str):
    """A `mode="before"` validator for a settings fragment: an empty value is None.
    Give the class attribute a name unique across services (`empty_<service>`): pydantic
    keys inherited validators by that name, so two fragments sharing one would clash."""
    from pydantic import field_validator

    def check(cls, v):
        return empty_is_none(v)

    return field_validator(*fields, mode="before")(classmethod(check))


def _env(field_name: str) -> str:
    return "LAKEHOUSE_" + field_name.upper()


def _toposort(by_name: dict[str, Service]) -> list[str]:
    """Dependencies first; among services free to start, the order of the modules' names
    (stable output). A cycle is an error naming it."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name):] + [name]
            raise RegistryError(f"service module {by_name[name].module or name}: dependency cycle "
                                + " -> ".join(cycle), "remove one of these depends_on entries")
        state[name] = 1
        for dep in by_name[name].depends_on:
            visit(dep, path + [name])
        state[name] = 2
        order.append(name)

    for name in sorted(by_name, key=lambda n: (len(_depth(by_name, n)), n)):
        visit(name, [])
    return order


def _depth(by_name: dict[str, Service], name: str, seen: frozenset = frozenset()) -> set[str]:
    """Every service `name` depends on, transitively (cycles are reported by _toposort)."""
    out: set[str] = set()
    for dep in by_name[name].depends_on:
        if dep in by_name and dep not in seen:
            out |= {dep} | _depth(by_name, dep, seen | {name})
    return out


def service_of_module(mod: ModuleType) -> Service:
    svc = getattr(mod, "SERVICE", None)
    if not isinstance(svc, Service):
        raise RegistryError(f"service module {mod.__name__}: no `SERVICE = Service(...)` in it",
                            "every module under lakehouse/stack/services/ describes one server")
    object.__setattr__(svc, "module", mod.__name__)
    return svc


def service_modules(package: str = SERVICES_PACKAGE) -> list[ModuleType]:
    pkg = importlib.import_module(package)
    mods = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        name = f"{package}.{info.name}"
        try:
            mods.append(importlib.import_module(name))
        except ImportError as exc:
            raise RegistryError(f"service module {name} does not import: {exc}",
                                "service modules import lakehouse.settings only under TYPE_CHECKING "
                                "(the settings class is assembled from them)") from exc
    return mods


@lru_cache(maxsize=1)
def load() -> Registry:
    """The registry of this checkout (cached for the process)."""
    return Registry(service_of_module(m) for m in service_modules())
