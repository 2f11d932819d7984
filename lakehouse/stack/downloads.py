"""Download once into the cache, verify, and never fetch again.

A download goes to a hidden `.part` file beside its final name and is renamed into place
only after its checksum matched, so the cache never holds a partial or corrupt file under
a real name. A second `make up` finds every file present and works offline.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import requests

from lakehouse.errors import DownloadError

CHUNK = 1 << 20
TIMEOUT = (15, 60)  # connect, read (seconds)


@dataclass(frozen=True)
class Artifact:
    """One file from a registry; its digest is fetched from beside it."""

    name: str          # file name in the cache
    url: str
    size_hint: int = 0  # bytes, for the free-space check when the server sends no length


def fetch_published_digest(url: str, session: requests.Session) -> tuple[str, str]:
    """(algorithm, hex digest) published beside `url`, trying the strongest first."""
    errors = []
    for suffix in (".sha512", ".sha256", ".sha1"):
        try:
            resp = session.get(url + suffix, timeout=TIMEOUT)
        except requests.RequestException as exc:
            errors.append(f"{suffix}: {exc}")
            continue
        if resp.status_code == 200:
            digest = resp.text.strip().split()[0].lower() if resp.text.strip() else ""
            algo = suffix[1:]
            if len(digest) == hashlib.new(algo).digest_size * 2:
                return algo, digest
            errors.append(f"{suffix}: not a {algo} digest")
        else:
            errors.append(f"{suffix}: HTTP {resp.status_code}")
    raise DownloadError(f"no published checksum for {url} ({'; '.join(errors)})",
                        "check the network, or that the artifact exists in the registry")


def ensure(artifact: Artifact, dest_dir: Path, *, quiet: bool = False,
           session: requests.Session | None = None) -> Path:
    """Return the cached file, downloading and verifying it first if it is absent."""
    final = dest_dir / artifact.name
    if final.is_file():
        return final
    dest_dir.mkdir(parents=True, exist_ok=True)
    _clear_stale_parts(dest_dir, artifact.name)
    session = session or requests.Session()
    algo, expected = fetch_published_digest(artifact.url, session)
    part = dest_dir / f".{artifact.name}.part-{os.getpid()}"
    try:
        try:
            resp = session.get(artifact.url, stream=True, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise DownloadError(f"cannot download {artifact.url}: {exc}",
                                "check the network; nothing was written to the cache") from exc
        if resp.status_code != 200:
            raise DownloadError(f"cannot download {artifact.url}: HTTP {resp.status_code}",
                                "check that the version exists in the registry")
        total = int(resp.headers.get("Content-Length") or artifact.size_hint or 0)
        _check_space(dest_dir, total, artifact)
        digest = hashlib.new(algo)
        got = 0
        next_report = 0.0
        with open(part, "wb") as fh:
            try:
                for chunk in resp.iter_content(CHUNK):
                    fh.write(chunk)
                    digest.update(chunk)
                    got += len(chunk)
                    if not quiet and total and got / total >= next_report:
                        print(f"  downloading {artifact.name}: {got >> 20} / {total >> 20} MiB",
                              file=sys.stderr, flush=True)
                        next_report += 0.1
            except (requests.RequestException, ConnectionError) as exc:
                raise DownloadError(
                    f"download of {artifact.url} was interrupted after {got} of {total or '?'} bytes: {exc}",
                    "run the command again; the partial file was removed") from exc
            fh.flush()
            os.fsync(fh.fileno())
        if total and got != total:
            raise DownloadError(
                f"download of {artifact.url} was cut short: {got} of {total} bytes",
                "run the command again; the partial file was removed")
        actual = digest.hexdigest()
        if actual != expected:
            raise DownloadError(
                f"checksum mismatch for {artifact.url}: published {algo} {expected}, got {actual}",
                "the file was discarded; retry, and if it persists the mirror or the pin is wrong")
        os.replace(part, final)
        return final
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DownloadError(
                f"disk full while downloading {artifact.name} into {dest_dir}",
                "free some space or point LAKEHOUSE_CACHE_DIR at a larger disk; "
                "the partial file was removed") from exc
        raise
    finally:
        part.unlink(missing_ok=True)


def _check_space(dest_dir: Path, total: int, artifact: Artifact) -> None:
    free = shutil.disk_usage(dest_dir).free
    if total and free < total + (64 << 20):
        raise DownloadError(
            f"not enough free disk for {artifact.name}: needs {total >> 20} MiB, "
            f"{free >> 20} MiB free in {dest_dir}",
            "free some space or point LAKEHOUSE_CACHE_DIR at a larger disk")


def _clear_stale_parts(dest_dir: Path, name: str) -> None:
    """Remove `.part` files left by a killed download (their pid is no longer running)."""
    for stale in dest_dir.glob(f".{name}.part-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and _pid_alive(int(pid)):
            continue
        stale.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
