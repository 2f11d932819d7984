"""Fetch one batch from a batch API, and parse its envelope.

Protocol (platform.md section 4): GET <base URL><source path>?group_number=N answers
{"group_number": N, "batch_number": k, "data": [...]}. Works with any server that speaks
it. The base URL, path, group and an optional auth header are the contract's `endpoint`
(`endpoint_url`, `endpoint_headers`); the secret of the header is read from the environment
variable the contract names, never from the contract. Transient failures (connection errors, timeouts, HTTP 5xx, a body cut short) are
retried with exponential backoff; what is still failing after that is a FetchError that
names the source, the group and the URL.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import orjson
import requests
from tenacity import (RetryError, retry, retry_if_exception_type, stop_after_attempt,
                      wait_exponential)

from lakehouse.errors import LakehouseError
from lakehouse.ingest import paused_gc


class FetchError(LakehouseError):
    """The batch could not be fetched (API down, HTTP error, timeout, truncated body)."""


class PayloadError(LakehouseError):
    """The body arrived but is not a batch: invalid JSON, wrong shape, empty data."""

    def __init__(self, message: str, hint: str | None = None, batch_number: int | None = None):
        super().__init__(message, hint)
        self.batch_number = batch_number


class _Transient(Exception):
    pass


@dataclass(frozen=True)
class Fetched:
    url: str
    body: bytes
    headers: dict = field(default_factory=dict)  # lower-case names

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


@dataclass(frozen=True)
class Batch:
    group_number: int
    batch_number: int
    data: list
    # sha256 of the payload's canonical form: the envelope minus group, batch and cycle, keys
    # sorted at every level, no whitespace, strings and numbers as parsed. A re-serialisation
    # of the same data (key order, whitespace, escapes, 1e2 for 100.0) is no change.
    payload_checksum: str = ""
    declared_cycle: int | None = None  # the cycle the envelope names, when the contract says where


ENVELOPE_KEYS = ("group_number", "batch_number")


def canonical_checksum(doc: dict, exclude: tuple[str, ...] = ENVELOPE_KEYS) -> str:
    rest = {k: v for k, v in doc.items() if k not in exclude}
    return hashlib.sha256(orjson.dumps(rest, option=orjson.OPT_SORT_KEYS)).hexdigest()


def declared_cycle(value, *, where: str, source: str, group: int, batch_number: int | None) -> int:
    """A cycle number the API sent (header text or envelope value): a positive integer."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise PayloadError(f"{source} group {group} batch {batch_number}: the cycle in {where} is "
                           f"{value!r}, not a positive integer",
                           "the whole body was quarantined; check the API (or the contract's endpoint.cycle)",
                           batch_number)
    return value


def endpoint_url(settings, contract, path: str | None = None) -> str:
    """The URL of a contract's endpoint (or of another `path` on its API): its own base URL,
    else the platform's batch API."""
    base = contract.source.base_url or settings.api_url
    return f"{base}{contract.source.path if path is None else path}"


def endpoint_headers(contract) -> dict[str, str]:
    """The contract's auth header, its value read from the environment variable it names
    (the process environment, else the stack's env file); an error naming the source and
    the variable if it is not set."""
    auth = contract.source.auth
    if auth is None:
        return {}
    import os

    from lakehouse.settings import env_file_path, read_env_file

    value = os.environ.get(auth.env)
    if value is None:
        path = env_file_path()
        value = read_env_file(path).get(auth.env) if path.exists() else None
    if not value:
        raise FetchError(f"{contract.id}: the contract's endpoint.auth names the environment variable "
                         f"{auth.env} for its {auth.header} header, and {auth.env} is not set",
                         f"set {auth.env} in the environment or in the env file ({env_file_path()}); "
                         "nothing was fetched or written")
    return {auth.header: auth.prefix + value}


def fetch(url: str, group: int, *, source: str, headers: dict | None = None, timeout: float = 30,
          attempts: int = 4, backoff: float = 1.0) -> Fetched:

    @retry(retry=retry_if_exception_type(_Transient), stop=stop_after_attempt(attempts),
           wait=wait_exponential(multiplier=backoff, max=30), reraise=False)
    def attempt() -> Fetched:
        try:
            resp = requests.get(url, params={"group_number": group}, headers=headers,
                                timeout=(min(timeout, 10), timeout))
            body = resp.content  # raises if the body is cut short
        except requests.Timeout as exc:
            raise _Transient(f"timed out after {timeout:g}s") from exc
        except requests.ConnectionError as exc:
            raise _Transient(f"connection failed: {_root(exc)}") from exc
        except requests.RequestException as exc:  # ChunkedEncodingError, ContentDecodingError
            raise _Transient(f"body cut short: {_root(exc)}") from exc
        if resp.status_code >= 500:
            raise _Transient(f"HTTP {resp.status_code}")
        if resp.status_code in (401, 403) and headers:
            raise FetchError(f"{source}: GET {resp.url} answered HTTP {resp.status_code}: the API refused the "
                             f"credentials in the {', '.join(headers)} header: {resp.text[:200]}",
                             "check the key in the environment variable the contract's endpoint.auth.env "
                             "names; nothing was written")
        if resp.status_code != 200:
            raise FetchError(f"{source}: GET {resp.url} answered HTTP {resp.status_code}: {resp.text[:200]}",
                             "check the contract's endpoint (base_url, or LAKEHOUSE_BATCH_API_URL; path) and the group number")
        declared = resp.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) != len(body):
            raise _Transient(f"body cut short: {len(body)} of {declared} bytes")
        return Fetched(resp.url, body, {k.lower(): v for k, v in resp.headers.items()})

    try:
        return attempt()
    except RetryError as exc:
        cause = exc.last_attempt.exception()
        raise FetchError(f"{source} group {group}: GET {url} failed after {attempts} attempts: {cause}",
                         "is the batch API up? (`lakehouse status`; the contract's endpoint.base_url, "
                         "else LAKEHOUSE_BATCH_API_URL); "
                         "nothing was written") from exc


def _root(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    return f"{type(exc).__name__}: {exc}"[:200]


def parse_envelope(body: bytes, *, source: str, group: int, cycle_field: str | None = None) -> Batch:
    """The batch envelope, or a PayloadError that says what is wrong with it. `cycle_field`:
    the envelope field holding the cycle, when the contract says the API sends one there."""
    try:
        with paused_gc():
            doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"{source} group {group}: the body is not valid JSON ({exc}); "
                           f"{len(body)} bytes, starting {body[:60]!r}",
                           "the whole body was quarantined; check the API") from exc
    if not isinstance(doc, dict):
        raise PayloadError(f"{source} group {group}: expected a JSON object with group_number, "
                           f"batch_number and data, got a JSON {type(doc).__name__}",
                           "the whole body was quarantined; check the API")
    batch_number = doc.get("batch_number")
    batch_number = batch_number if isinstance(batch_number, int) and not isinstance(batch_number, bool) else None
    problems = []
    for key, kind in (("group_number", int), ("batch_number", int), ("data", list)):
        if key not in doc:
            problems.append(f"missing {key!r}")
        elif not isinstance(doc[key], kind) or isinstance(doc[key], bool):
            problems.append(f"{key!r} is a {type(doc[key]).__name__}, expected {kind.__name__}")
    if problems:
        raise PayloadError(f"{source} group {group}: wrong batch shape: {'; '.join(problems)}",
                           "the whole body was quarantined; check the API", batch_number)
    if doc["group_number"] != group:
        raise PayloadError(f"{source}: asked for group {group}, the API answered group {doc['group_number']}",
                           "the whole body was quarantined; check the API", batch_number)
    if batch_number < 1:
        raise PayloadError(f"{source} group {group}: batch_number {batch_number} is not positive",
                           "the whole body was quarantined; check the API", batch_number)
    if not doc["data"]:
        raise PayloadError(f"{source} group {group} batch {batch_number}: empty 'data' array",
                           "nothing to ingest; the API published an empty batch", batch_number)
    cycle = None
    if cycle_field is not None and doc.get(cycle_field) is not None:
        cycle = declared_cycle(doc[cycle_field], where=f"field {cycle_field!r}", source=source, group=group,
                               batch_number=batch_number)
    exclude = ENVELOPE_KEYS + ((cycle_field,) if cycle_field else ())
    with paused_gc():
        checksum = canonical_checksum(doc, exclude)
    return Batch(doc["group_number"], batch_number, doc["data"], checksum, cycle)
