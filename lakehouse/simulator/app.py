"""The batch API simulator's HTTP app: the protocol of platform.md section 4, per network.

Scope: serves `GET /<network>/data?group_number=N` and `GET /restart_data_generation`,
plus health and a `/_control` API that arms whole-response faults for ingestion's error
tests. Writes only its state file (cycle number and start time per group), atomically.
Generation itself is pure (generator.py); this module adds the clock, the cache and the
faults that concern a whole response.

Run it with `python -m lakehouse.simulator`, or `uvicorn --factory
lakehouse.simulator.app:create_app`.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from lakehouse.errors import LakehouseError
from lakehouse.settings import Settings, load_settings
from lakehouse.simulator.faults import BATCH_FAULT_HELP, BATCH_FAULT_KINDS, QUARANTINE_KINDS
from lakehouse.simulator.generator import (
    BATCHES_PER_CYCLE,
    DEFAULT_ROW_FORMAT,
    NETWORKS,
    ROW_FORMATS,
    SimulatorConfigError,
    network_spec,
    render_batch,
)

# Groups above this would push network B's dates past the contract's maximum timestamp.
MAX_GROUP_NUMBER = 9999
STATE_VERSION = 1
# Why: a client that reads the cycle can tell a new cycle's batch 1 from the old one's;
# the protocol's body has no such field, so ingestion must not need it.
CYCLE_HEADER = "X-Simulator-Cycle"

GroupNumber = Annotated[int, Query(
    ge=0, le=MAX_GROUP_NUMBER,
    description="Your group's number. Each group has its own cycles and its own data.")]


class SimulatorStateError(LakehouseError):
    """The simulator's state file is unreadable or not what this version wrote."""


@dataclass(frozen=True)
class SimulatorConfig:
    seed: int
    period_seconds: float
    fault_rate: float
    rows_per_batch: int
    state_file: Path
    row_format: Mapping[str, str]


# ---- per-group cycle state ---------------------------------------------------------------
class GroupStates:
    """Cycle number and start (epoch seconds) per group, kept in a JSON file.

    The file is replaced atomically (temp file, fsync, rename), so a simulator killed
    mid-write leaves the old state, and a restarted one continues the same cycles.
    """

    def __init__(self, path: Path, clock: Callable[[], float]):
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.Lock()
        self._groups: dict[int, dict[str, float | int]] = self._load()

    def _load(self) -> dict[int, dict[str, float | int]]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise SimulatorStateError(f"simulator state {self.path} is unreadable: "
                                      f"{exc.strerror}", f"fix its permissions or delete it "
                                      "(every group then starts again at cycle 1)") from exc
        hint = f"delete {self.path} (every group then starts again at cycle 1)"
        try:
            doc = json.loads(raw)
            if doc.get("version") != STATE_VERSION:
                raise SimulatorStateError(f"simulator state {self.path} has version "
                                          f"{doc.get('version')!r}, expected {STATE_VERSION}",
                                          hint)
            return {int(g): {"cycle": int(v["cycle"]), "started_at": float(v["started_at"])}
                    for g, v in doc["groups"].items()}
        except SimulatorStateError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SimulatorStateError(f"simulator state {self.path} is not the JSON this "
                                      f"simulator writes ({type(exc).__name__}: {exc})",
                                      hint) from exc

    def _save(self) -> None:
        doc = {"version": STATE_VERSION, "groups": {
            str(g): {**v, "started_at_utc": _iso(float(v["started_at"]))}
            for g, v in sorted(self._groups.items())}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(json.dumps(doc, indent=2).encode() + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def position(self, group: int, period: float) -> tuple[int, int]:
        """(cycle, newest published batch) of `group`; its first request starts cycle 1."""
        with self._lock:
            now = self.clock()
            state = self._groups.get(group)
            if state is None:
                state = self._groups[group] = {"cycle": 1, "started_at": now}
                self._save()
            return int(state["cycle"]), _batch_at(now - float(state["started_at"]), period)

    def restart(self, group: int) -> tuple[int, float]:
        """Start the next cycle of `group` now: (new cycle, its start)."""
        with self._lock:
            now = self.clock()
            previous = self._groups.get(group)
            cycle = 1 if previous is None else int(previous["cycle"]) + 1
            self._groups[group] = {"cycle": cycle, "started_at": now}
            self._save()
            return cycle, now

    def snapshot(self, period: float) -> dict[str, Any]:
        with self._lock:
            now = self.clock()
            return {str(g): {"cycle": int(v["cycle"]), "started_at": _iso(float(v["started_at"])),
                             "current_batch": _batch_at(now - float(v["started_at"]), period)}
                    for g, v in sorted(self._groups.items())}


def _batch_at(elapsed: float, period: float) -> int:
    # Batch k is published at (k-1) * period. The millisecond of slack keeps an instant
    # computed in floating point (epoch + 3 * 0.2 s) from landing just short of it.
    published = int((max(0.0, elapsed) + 0.001) / period) + 1
    return min(BATCHES_PER_CYCLE, published)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")


# ---- whole-response faults ---------------------------------------------------------------
@dataclass
class ArmedFault:
    kind: str
    remaining: int
    delay_seconds: float
    served: int = 0


@dataclass
class FaultSwitch:
    """The whole-response fault armed per network; each faulty response uses up one."""

    armed: dict[str, ArmedFault] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def arm(self, network: str, kind: str, times: int, delay_seconds: float) -> None:
        with self._lock:
            self.armed[network] = ArmedFault(kind, times, delay_seconds)

    def take(self, network: str) -> tuple[ArmedFault, int] | None:
        """The fault for this response and its ordinal (0 for the first), or None."""
        with self._lock:
            fault = self.armed.get(network)
            if fault is None:
                return None
            nth = fault.served
            fault.served += 1
            fault.remaining -= 1
            if fault.remaining <= 0:
                del self.armed[network]
            return fault, nth

    def disarm(self, network: str | None) -> list[str]:
        with self._lock:
            nets = [n for n in self.armed if network in (None, n)]
            for n in nets:
                del self.armed[n]
            return nets

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {n: {"kind": f.kind, "remaining": f.remaining,
                        "delay_seconds": f.delay_seconds} for n, f in self.armed.items()}


class TruncatedResponse(Response):
    """Promises the whole body in Content-Length, sends half, and ends the exchange.

    Returning without the final body message makes the server close the connection, so
    the client sees an incomplete read (uvicorn logs "ASGI callable returned without
    completing response.", which is the point).
    """

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 (ASGI)
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body[: len(self.body) // 2],
                    "more_body": True})


# ---- the simulator -----------------------------------------------------------------------
class Simulator:
    """State, faults and the last batch body per network (repeated polls are free)."""

    def __init__(self, config: SimulatorConfig, clock: Callable[[], float]):
        self.config = config
        self.states = GroupStates(config.state_file, clock)
        self.faults = FaultSwitch()
        self._cache: dict[str, tuple[tuple[int, int, int], bytes]] = {}
        self._locks = {n: threading.Lock() for n in NETWORKS}

    def body(self, network: str, group: int, cycle: int, batch: int) -> bytes:
        key = (group, cycle, batch)
        with self._locks[network]:  # one generation per network at a time, never two alike
            cached = self._cache.get(network)
            if cached and cached[0] == key:
                return cached[1]
            self._cache.pop(network, None)  # free the old body before building the new one
            c = self.config
            body = render_batch(network, group, cycle, batch, seed=c.seed,
                                rows=c.rows_per_batch, fault_rate=c.fault_rate,
                                row_format=c.row_format)
            self._cache[network] = (key, body)
            return body


class BatchEnvelope(BaseModel):
    """The protocol's response: the newest published batch of the group's current cycle."""

    group_number: int = Field(description="The group asked for.")
    batch_number: int = Field(ge=1, le=BATCHES_PER_CYCLE,
                              description="1..10 within the cycle; stays 10 until restarted.")
    data: list[Any] = Field(description="Rows: objects (network A) or arrays in the contract's "
                                        "field order (network B), per the row format.")


class RestartResult(BaseModel):
    group_number: int
    cycle: int = Field(description="The cycle just started (the first one is 1).")
    started_at: str = Field(description="When batch 1 of it was published (UTC).")
    message: str


class FaultRequest(BaseModel):
    """Arm a whole-response fault: the next `times` data responses of `network` get it."""

    network: Literal[NETWORKS]  # type: ignore[valid-type]
    kind: Literal[BATCH_FAULT_KINDS] = Field(  # type: ignore[valid-type]
        description="; ".join(f"{k}: {v}" for k, v in BATCH_FAULT_HELP.items()))
    times: int = Field(1, ge=1, le=1_000_000)
    delay_seconds: float = Field(30.0, gt=0, le=3600,
                                 description="How long `timeout` sleeps before answering.")


def create_app(settings: Settings | None = None, *, seed: int | None = None,
               period_seconds: float | None = None, fault_rate: float | None = None,
               rows_per_batch: int | None = None, state_file: Path | str | None = None,
               row_format: Mapping[str, str] | None = None,
               clock: Callable[[], float] = time.time) -> FastAPI:
    """The simulator app. Every parameter left None comes from `settings` (loaded if needed).

    `clock` returns epoch seconds; tests pass their own to move time without sleeping.
    """
    needed = (seed, period_seconds, fault_rate, rows_per_batch, state_file)
    if settings is None and any(v is None for v in needed):
        settings = load_settings()
    fmt = {**DEFAULT_ROW_FORMAT, **(row_format or {})}
    for net, f in fmt.items():
        if net not in NETWORKS or f not in ROW_FORMATS:
            raise SimulatorConfigError(f"row_format {{{net!r}: {f!r}}}: networks are "
                                       f"{NETWORKS}, formats {ROW_FORMATS}")
    config = SimulatorConfig(
        seed=settings.simulator_seed if seed is None else seed,
        period_seconds=settings.simulator_period_seconds if period_seconds is None
        else period_seconds,
        fault_rate=settings.simulator_fault_rate if fault_rate is None else fault_rate,
        rows_per_batch=settings.simulator_rows_per_batch if rows_per_batch is None
        else rows_per_batch,
        state_file=Path(state_file) if state_file is not None
        else settings.data_path / "simulator" / "state.json",
        row_format=fmt,
    )
    if config.period_seconds <= 0 or not 0 <= config.fault_rate <= 1 or config.rows_per_batch < 1:
        raise SimulatorConfigError(
            f"period_seconds {config.period_seconds} must be > 0, fault_rate "
            f"{config.fault_rate} within 0..1, rows_per_batch {config.rows_per_batch} >= 1")
    sim = Simulator(config, clock)

    app = FastAPI(
        title="Lakehouse batch API simulator",
        version="1",
        description=(
            "Air-quality readings of two station networks, served batch by batch.\n\n"
            f"A cycle has {BATCHES_PER_CYCLE} batches. Batch k is published "
            f"(k-1) x {config.period_seconds:g} s after the group's cycle starts (its first "
            "request, or a restart); a data request answers the newest published batch, "
            "and batch 10 until the next restart. About "
            f"{config.fault_rate:.0%} of the rows carry a fault; the kinds "
            f"{', '.join(sorted(QUARANTINE_KINDS))} break the contract and must be "
            "quarantined. See docs/simulator.md."),
        openapi_tags=[
            {"name": "batches", "description": "The protocol: data and restart, per network."},
            {"name": "control", "description": "Not part of the protocol: arm whole-response "
                                               "faults for tests, inspect cycles."},
            {"name": "health", "description": "Liveness."},
        ],
    )
    app.state.simulator = sim

    def restart(group_number: GroupNumber) -> RestartResult:
        cycle, started = sim.states.restart(group_number)
        return RestartResult(
            group_number=group_number, cycle=cycle, started_at=_iso(started),
            message=f"data generation restarted for group {group_number}: cycle {cycle} "
                    f"started, batch 1 is published now (both networks)")

    restart_doc = dict(tags=["batches"], response_model=RestartResult,
                       summary="Start a new cycle for a group (both networks)")
    app.add_api_route("/restart_data_generation", restart, methods=["GET"], **restart_doc)

    for network in NETWORKS:
        spec = network_spec(network)
        prefix = spec.path.rsplit("/", 1)[0]
        app.add_api_route(spec.path, _data_endpoint(sim, network), methods=["GET"],
                          tags=["batches"], response_model=BatchEnvelope,
                          summary=f"Newest published batch of {network} ({spec.contract_id})",
                          name=f"{network}-data",
                          responses={422: {"description": "group_number missing or invalid"}})
        app.add_api_route(f"{prefix}/restart_data_generation", restart, methods=["GET"],
                          name=f"{network}-restart", **restart_doc)

    @app.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(_control_router(sim))
    return app


def _data_endpoint(sim: Simulator, network: str):
    async def get_batch(group_number: GroupNumber) -> Response:
        cycle, batch = sim.states.position(group_number, sim.config.period_seconds)
        headers = {CYCLE_HEADER: str(cycle), "Cache-Control": "no-store"}
        taken = sim.faults.take(network)
        kind = taken[0].kind if taken else None
        envelope = {"group_number": group_number, "batch_number": batch}
        if kind == "http_500":
            return JSONResponse({"detail": f"injected fault http_500 on {network} (armed "
                                           "through POST /_control/faults)"},
                                status_code=500, headers=headers)
        if kind == "invalid_json":
            body = b'{"group_number": %d, "batch_number"' % group_number + b" <<not json>>"
            return Response(body, media_type="application/json", headers=headers)
        if kind == "empty_data":
            return Response(orjson.dumps({**envelope, "data": []}),
                            media_type="application/json", headers=headers)
        if kind == "wrong_shape" and taken[1] % 2 == 1:
            return Response(orjson.dumps(envelope), media_type="application/json",
                            headers=headers)
        if kind == "timeout":
            await asyncio.sleep(taken[0].delay_seconds)
        body = await run_in_threadpool(sim.body, network, group_number, cycle, batch)
        if kind == "wrong_shape":  # the rows alone: a JSON list at top level
            start = body.index(b'"data":') + len(b'"data":')
            return Response(body[start:-1], media_type="application/json", headers=headers)
        if kind == "truncated":
            return TruncatedResponse(body, media_type="application/json", headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    get_batch.__name__ = f"get_{network.replace('-', '_')}_batch"
    get_batch.__doc__ = (f"The newest published batch of the group's current cycle on "
                         f"{network}. Starts the group's first cycle on its first request.")
    return get_batch


def _control_router(sim: Simulator) -> APIRouter:
    router = APIRouter(prefix="/_control", tags=["control"])

    @router.post("/faults", summary="Arm a whole-response fault for the next data responses")
    def arm(req: FaultRequest) -> dict[str, Any]:
        sim.faults.arm(req.network, req.kind, req.times, req.delay_seconds)
        return {"armed": sim.faults.snapshot()}

    @router.delete("/faults", summary="Disarm whole-response faults (all, or one network's)")
    def disarm(network: Annotated[Literal[NETWORKS] | None,  # type: ignore[valid-type]
                                  Query(description="Only this network")] = None
               ) -> dict[str, Any]:
        return {"disarmed": sim.faults.disarm(network), "armed": sim.faults.snapshot()}

    @router.get("/state", summary="Groups' cycles, armed faults and the configuration")
    def state() -> dict[str, Any]:
        c = sim.config
        return {
            "groups": sim.states.snapshot(c.period_seconds),
            "armed_faults": sim.faults.snapshot(),
            "config": {"seed": c.seed, "period_seconds": c.period_seconds,
                       "fault_rate": c.fault_rate, "rows_per_batch": c.rows_per_batch,
                       "row_format": dict(c.row_format), "state_file": str(c.state_file),
                       "batches_per_cycle": BATCHES_PER_CYCLE},
        }

    return router
