"""Downloads into the cache against a real local HTTP server: verified, atomic, offline-safe."""

import hashlib
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lakehouse.errors import DownloadError
from lakehouse.stack.downloads import Artifact, ensure

PAYLOAD = os.urandom(3 * (1 << 20) + 123)  # 3 MiB and a bit: several chunks
BIG = os.urandom(8 << 20)


class Registry(BaseHTTPRequestHandler):
    """A tiny Maven-like registry with a few broken artifacts."""

    hits: list[str] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, body: bytes, length: int | None = None):
        self.send_response(200)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server API
        Registry.hits.append(self.path)
        routes = {
            "/ok.bin": (PAYLOAD, len(PAYLOAD)),
            "/ok.bin.sha1": (hashlib.sha1(PAYLOAD).hexdigest().encode() + b"  ok.bin\n", None),
            "/tampered.bin": (PAYLOAD[:-1] + b"X", len(PAYLOAD)),
            "/tampered.bin.sha1": (hashlib.sha1(PAYLOAD).hexdigest().encode(), None),
            # headers promise the whole file, the connection closes halfway
            "/cut.bin": (PAYLOAD[: len(PAYLOAD) // 2], len(PAYLOAD)),
            "/cut.bin.sha1": (hashlib.sha1(PAYLOAD).hexdigest().encode(), None),
            "/big.bin": (BIG, len(BIG)),
            "/big.bin.sha1": (hashlib.sha1(BIG).hexdigest().encode(), None),
            # no Content-Length: the size is only known when the disk fills up
            "/big-nolen.bin": (BIG, None),
            "/big-nolen.bin.sha1": (hashlib.sha1(BIG).hexdigest().encode(), None),
        }
        if self.path not in routes:
            self.send_response(404)
            self.end_headers()
            return
        body, length = routes[self.path]
        self.close_connection = True
        self._send(body, length)


@pytest.fixture
def registry():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Registry.hits = []
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield base, server
    server.shutdown()
    server.server_close()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_verifies_and_then_works_offline(registry, tmp_path):
    base, server = registry
    art = Artifact("ok.bin", f"{base}/ok.bin")
    path = ensure(art, tmp_path, quiet=True)
    assert path.read_bytes() == PAYLOAD
    assert _leftovers(tmp_path) == ["ok.bin"]
    server.shutdown()
    server.server_close()
    hits = len(Registry.hits)
    # registry gone: the second call must not touch the network
    assert ensure(art, tmp_path, quiet=True) == path
    assert len(Registry.hits) == hits


def test_checksum_mismatch_keeps_nothing(registry, tmp_path):
    base, _ = registry
    with pytest.raises(DownloadError, match=r"checksum mismatch for .*tampered.bin: published sha1"):
        ensure(Artifact("tampered.bin", f"{base}/tampered.bin"), tmp_path, quiet=True)
    assert _leftovers(tmp_path) == []


def test_interrupted_download_keeps_nothing(registry, tmp_path):
    base, _ = registry
    with pytest.raises(DownloadError, match=r"interrupted|cut short"):
        ensure(Artifact("cut.bin", f"{base}/cut.bin"), tmp_path, quiet=True)
    assert _leftovers(tmp_path) == []


def test_no_published_checksum_is_an_error(registry, tmp_path):
    base, _ = registry
    with pytest.raises(DownloadError, match="no published checksum"):
        ensure(Artifact("missing.bin", f"{base}/missing.bin"), tmp_path, quiet=True)
    assert _leftovers(tmp_path) == []


def test_stale_part_file_from_a_killed_download_is_removed(registry, tmp_path):
    base, _ = registry
    stale = tmp_path / ".ok.bin.part-999999999"  # no such pid
    stale.write_bytes(b"half")
    ensure(Artifact("ok.bin", f"{base}/ok.bin"), tmp_path, quiet=True)
    assert _leftovers(tmp_path) == ["ok.bin"]


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 4 MiB file system (tmpfs), so 'disk nearly full' is the kernel's answer."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_disk_nearly_full_is_refused_before_writing(registry, tiny_disk):
    base, _ = registry
    with pytest.raises(DownloadError, match=r"not enough free disk for big.bin: needs 8 MiB"):
        ensure(Artifact("big.bin", f"{base}/big.bin"), tiny_disk, quiet=True)
    assert _leftovers(tiny_disk) == []


def test_disk_filling_up_mid_download_keeps_nothing(registry, tiny_disk):
    base, _ = registry
    with pytest.raises(DownloadError, match=r"disk full while downloading big-nolen.bin"):
        ensure(Artifact("big-nolen.bin", f"{base}/big-nolen.bin"), tiny_disk, quiet=True)
    assert _leftovers(tiny_disk) == []
