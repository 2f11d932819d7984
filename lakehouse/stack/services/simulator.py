"""The bundled batch API simulator (lakehouse.simulator): the demo's and the tests' source.

Any server speaking the batch protocol can replace it (LAKEHOUSE_BATCH_API_URL); this one
serves two station networks with injected faults, deterministic from a seed.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from lakehouse.paths import REPO_ROOT
from lakehouse.stack.checks import http_ok
from lakehouse.stack.registry import Program, Service

if TYPE_CHECKING:
    from lakehouse.settings import Settings


class Config(BaseModel):
    simulator_port: int = Field(8765, ge=1, le=65535)
    simulator_seed: int = 42
    simulator_period_seconds: float = Field(300, gt=0)
    simulator_fault_rate: float = Field(0.03, ge=0, le=1)
    simulator_rows_per_batch: int = Field(1000, ge=1)

    @property
    def simulator_url(self) -> str:
        return f"http://{self.host}:{self.simulator_port}"


def command(settings: Settings) -> list[str]:
    return [sys.executable, "-m", "lakehouse.simulator", "--host", settings.host,
            "--port", str(settings.simulator_port),
            "--state-file", str(settings.data_path / "simulator" / "state.json")]


SERVICE = Service(
    name="simulator",
    description="the bundled batch API (two station networks, 10 batches a cycle, injected faults)",
    settings=Config,
    ports=("simulator_port",),
    programs=(Program(
        name="simulator", command=command, start_timeout=60,
        env=lambda s: {"PYTHONPATH": str(REPO_ROOT)},
        health=lambda s: http_ok(f"{s.simulator_url}/health"),
        url=lambda s: f"{s.simulator_url}/docs"),),
)
