"""The simulator as a real HTTP server inside this process, with a clock its owner moves.

Used by `lakehouse demo` (publish the next batch as soon as the last one is ingested) and
by the integration tests. Binds 127.0.0.1 on a free port.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import uvicorn

from lakehouse.simulator.app import create_app


class SteppedSimulator:
    """Batch k is published when `next_batch()` has been called k-1 times."""

    def __init__(self, state_file: Path, *, seed: int, rows_per_batch: int, fault_rate: float,
                 period_seconds: float = 60.0, row_format: dict | None = None):
        self.t = 2_000_000_000.0
        self.period = period_seconds
        app = create_app(seed=seed, period_seconds=period_seconds, fault_rate=fault_rate,
                         rows_per_batch=rows_per_batch, state_file=state_file,
                         row_format=row_format, clock=lambda: self.t)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        threading.Thread(target=self._server.run, daemon=True).start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the simulator did not start within 20 s")
            time.sleep(0.05)

    def next_batch(self) -> None:
        self.t += self.period

    def stop(self) -> None:
        self._server.should_exit = True
