"""A second batch API, written apart from lakehouse.simulator: the stdlib's HTTP server, rows
as arrays in network B's field order, no cycle header or field, and a restart that serves
new data. Ingestion must follow it from the protocol alone (the cycle is inferred).

GET /readings?group_number=N             the current batch of group N
GET /restart_data_generation?group_number=N   a new cycle: batch 1, new data; answers {"ok": true}

The tests move it by hand (`advance`), and can make it misbehave: serve a batch number of
their choice, change the current batch's data, or re-serialise it (other key order and
whitespace, the same data).
"""

from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PATH = "/readings"


class OtherApi:
    def __init__(self, rows: int = 50):
        self.rows = rows
        self.state: dict[int, dict] = {}  # group -> {"cycle", "batch", "edit", "pretty"}
        self.lock = threading.Lock()
        self.restarts = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urlparse(self.path)
                query = parse_qs(url.query)
                try:
                    group = int(query["group_number"][0])
                except (KeyError, ValueError):
                    return self._send(422, b'{"error": "group_number required"}')
                if url.path == PATH:
                    return self._send(200, api.body(group))
                if url.path == "/restart_data_generation":
                    api.restart(group)
                    return self._send(200, b'{"ok": true}')
                return self._send(404, b'{"error": "not found"}')

            def _send(self, code: int, body: bytes):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ---- state -----------------------------------------------------------------------------
    def _group(self, group: int) -> dict:
        return self.state.setdefault(group, {"cycle": 1, "batch": 1, "edit": 0, "pretty": False})

    def advance(self, group: int, batches: int = 1) -> None:
        with self.lock:
            g = self._group(group)
            g["batch"] += batches
            g["edit"] = 0

    def serve(self, group: int, batch: int) -> None:
        """Answer this batch number from now on (any integer: out of range on purpose)."""
        with self.lock:
            self._group(group)["batch"] = batch

    def change_data(self, group: int) -> None:
        """The same batch number with other rows (an API that re-published a batch)."""
        with self.lock:
            self._group(group)["edit"] += 1

    def reserialise(self, group: int) -> None:
        """The same data in another layout: keys reordered, indented."""
        with self.lock:
            self._group(group)["pretty"] = True

    def restart(self, group: int) -> None:
        with self.lock:
            g = self._group(group)
            g.update(cycle=g["cycle"] + 1, batch=1, edit=0)
            self.restarts += 1

    # ---- data ------------------------------------------------------------------------------
    def rows_of(self, group: int, cycle: int, batch: int, edit: int = 0) -> list[list]:
        rnd = random.Random(f"{group}/{cycle}/{batch}/{edit}")
        start = 1_767_225_600_000 + ((cycle * 100 + batch) * 3_600_000)
        return [[f"iot-{rnd.randrange(16 ** 6):06x}", start + i * 1000, round(rnd.uniform(0, 200), 2),
                 round(rnd.uniform(0, 0.2), 4), round(rnd.uniform(20, 100), 1), round(rnd.uniform(0, 1), 3),
                 round(rnd.uniform(3, 4.2), 2)] for i in range(self.rows)]

    def body(self, group: int) -> bytes:
        with self.lock:
            g = dict(self._group(group))
        doc = {"batch_number": g["batch"], "group_number": group,
               "data": self.rows_of(group, g["cycle"], g["batch"], g["edit"])}
        if g["pretty"]:
            return json.dumps(dict(reversed(list(doc.items()))), indent=2).encode()
        return json.dumps(doc, separators=(",", ":")).encode()
