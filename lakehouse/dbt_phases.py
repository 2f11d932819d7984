"""Run several dbt commands in one process that parses the project once.

`python -m lakehouse.dbt_phases SPEC.json`, started by `lakehouse.dbt.run_phases` with dbt's
environment. SPEC: {"parse": [dbt args], "phases": [{"name": ..., "args": [dbt args]}, ...]}.
The project is parsed once (`dbt parse` with the parse args, which carry the --vars the
phases share: a var can change a model's config), and every phase is invoked on that
manifest (dbt's programmatic invocation, `dbtRunner(manifest=...)`), in order, until one
fails. Each phase's args carry its own --target-path and --log-path. A separate dbt process
per phase would pay Python's start and the parse again: seconds per phase.

A phase marked `"ask": true` runs only if the parent agrees: before it, this process writes
the phase's name and a newline to the file descriptor `ask_fd` of the spec, and reads one line
from stdin: `run` runs the phase, anything else leaves it out (the parent decides with what
it knows then, e.g. whether newer batches are waiting; lakehouse/marts.py).

Exit status: 0 when every phase succeeded or was left out; k when phase k (from 1) failed;
100 when the parse failed. Imports only dbt: this runs with dbt's environment, and none of
ours.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

PARSE_FAILED = 100


def main(argv: list[str]) -> int:
    from dbt.cli.main import dbtRunner

    spec = json.loads(Path(argv[0]).read_text())
    parsed = dbtRunner().invoke(["parse", *spec["parse"]])
    if not parsed.success:
        print(f"dbt parse failed: {parsed.exception or 'see its output above'}", file=sys.stderr, flush=True)
        return PARSE_FAILED
    runner = dbtRunner(manifest=parsed.result)
    for k, phase in enumerate(spec["phases"], start=1):
        if phase.get("ask"):
            os.write(spec["ask_fd"], f"{phase['name']}\n".encode())
            answer = sys.stdin.readline().strip()
            if answer != "run":
                print(f"dbt phase {phase['name']}: left out ({answer or 'no answer'})", file=sys.stderr, flush=True)
                continue
        t0 = time.monotonic()
        result = runner.invoke(phase["args"])
        print(f"dbt phase {phase['name']}: {'done' if result.success else 'failed'} in "
              f"{time.monotonic() - t0:.1f}s", file=sys.stderr, flush=True)
        if not result.success:
            return k
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
