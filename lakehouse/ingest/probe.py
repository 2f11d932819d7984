"""Health probes of the contracts' endpoints, and the state the ingestion DAGs read.

Scope: GETs each endpoint once (with its auth header); reads and writes
<data dir>/sources/probes.json.

A contract with an endpoint of its own (`endpoint.base_url`) is a source the platform does
not run: its ingestion DAG is created paused until its endpoint has answered a probe
(`lakehouse sources probe`, also run by `lakehouse up`), and says so. A probe passes when
the endpoint answers HTTP 200 with a batch envelope (a JSON object with a batch_number).
Sources on the platform's own batch API are not gated: the platform starts that API.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import requests

from lakehouse.contracts.model import Contract
from lakehouse.ingest.fetch import FetchError, endpoint_headers, endpoint_url
from lakehouse.settings import Settings


def state_file(settings: Settings) -> Path:
    return settings.data_path / "sources" / "probes.json"


def gated(contract: Contract) -> bool:
    """Whether the contract's DAG waits for a probe: its endpoint is not the platform's API."""
    return contract.source.base_url is not None


def read_state(settings: Settings) -> dict:
    try:
        return json.loads(state_file(settings).read_text())
    except (OSError, ValueError):
        return {}


def waiting(settings: Settings, contract: Contract) -> str | None:
    """Why the contract's DAG is created paused (its endpoint never answered a probe), or None."""
    if not gated(contract):
        return None
    last = read_state(settings).get(contract.id)
    if last and last.get("answered_at"):
        return None
    detail = f"; last probe {last['at']}: {last['detail']}" if last else "; not probed yet"
    return (f"paused until its endpoint ({endpoint_url(settings, contract)}) answers a health probe "
            f"(`lakehouse sources probe`){detail}")


def probe(settings: Settings, contract: Contract, group: int | None = None, timeout: float = 10) -> tuple[bool, str]:
    """(answered, what happened) for one GET of the endpoint."""
    group = group if group is not None else (contract.source.group_number
                                             if contract.source.group_number is not None else settings.group_number)
    url = endpoint_url(settings, contract)
    try:
        headers = endpoint_headers(contract)
        resp = requests.get(url, params={"group_number": group}, headers=headers, timeout=timeout)
    except FetchError as exc:
        return False, exc.message
    except requests.RequestException as exc:
        return False, f"GET {url} failed: {type(exc).__name__}: {exc}"[:300]
    if resp.status_code != 200:
        return False, f"GET {resp.url} answered HTTP {resp.status_code}: {resp.text[:120]}"
    try:
        doc = resp.json()
    except ValueError:
        return False, f"GET {resp.url} answered HTTP 200 with a body that is not JSON"
    if not isinstance(doc, dict) or "batch_number" not in doc:
        return False, f"GET {resp.url} answered HTTP 200 without a batch envelope (no batch_number)"
    return True, f"GET {resp.url} answered batch {doc['batch_number']}"


def _update(settings: Settings, contract_id: str, **values) -> dict:
    path = state_file(settings)
    state = read_state(settings)
    entry = state.setdefault(contract_id, {})
    entry.update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return entry


def record(settings: Settings, contract: Contract, answered: bool, detail: str) -> bool:
    """Keep the probe's outcome; True if the endpoint answered for the first time."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    first = answered and not read_state(settings).get(contract.id, {}).get("answered_at")
    _update(settings, contract.id, at=now, answered=answered, detail=detail,
            **({"answered_at": now} if first else {}))
    return first


def to_unpause(settings: Settings, contracts) -> list[Contract]:
    """Gated contracts whose endpoint has answered and whose DAG the probe has not unpaused
    yet (once unpaused, a DAG a person pauses stays paused)."""
    state = read_state(settings)
    return [c for c in contracts if gated(c) and state.get(c.id, {}).get("answered_at")
            and not state[c.id].get("unpaused_at")]


def unpaused(settings: Settings, contract: Contract) -> None:
    _update(settings, contract.id, unpaused_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
