"""`python -m lakehouse.simulator`: serve the batch API simulator with uvicorn.

Scope: parses options, fills the rest from the env file (lakehouse.settings), runs uvicorn
in the foreground. Binds LAKEHOUSE_HOST (127.0.0.1 unless changed), never all interfaces
unless told to with --host.
"""

from __future__ import annotations

import argparse
import sys

from lakehouse.errors import LakehouseError
from lakehouse.settings import Settings


def _default(name: str) -> str:
    return f"LAKEHOUSE_{name.upper()} from the env file, else {Settings.model_fields[name].default}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lakehouse.simulator",
        description=(
            "Serve the batch API simulator: air-quality readings of two station networks, "
            "10 batches a cycle, with injected faults.\n\n"
            "  GET  /network-a/data?group_number=N    newest published batch of network A\n"
            "  GET  /network-b/data?group_number=N    same for network B\n"
            "  GET  /restart_data_generation?group_number=N   start a new cycle\n"
            "  GET  /health, /docs (OpenAPI), /_control/state\n"
            "  POST /_control/faults   arm whole-response faults for tests\n\n"
            "Options left out come from the env file (see .env.example)."),
        epilog="Example: python -m lakehouse.simulator --period 2 --rows-per-batch 500 "
               "--fault-rate 0.05   (then open http://127.0.0.1:8765/docs). "
               "More in docs/simulator.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help=f"address to bind (default: {_default('host')}; "
                                       "0.0.0.0 exposes it to the network)")
    parser.add_argument("--port", type=int, help=f"port (default: {_default('simulator_port')})")
    parser.add_argument("--seed", type=int,
                        help=f"data seed; same seed, same data (default: "
                             f"{_default('simulator_seed')})")
    parser.add_argument("--period", type=float, metavar="SECONDS",
                        help=f"seconds between batches of a cycle (default: "
                             f"{_default('simulator_period_seconds')})")
    parser.add_argument("--fault-rate", type=float, metavar="R",
                        help=f"share of rows with an injected fault, 0 disables (default: "
                             f"{_default('simulator_fault_rate')})")
    parser.add_argument("--rows-per-batch", type=int, metavar="N",
                        help=f"rows in each batch (default: "
                             f"{_default('simulator_rows_per_batch')})")
    parser.add_argument("--state-file", metavar="F",
                        help="JSON file keeping each group's cycle across restarts "
                             "(default: <LAKEHOUSE_DATA_DIR>/simulator/state.json)")
    parser.add_argument("--log-level", default="info",
                        choices=["critical", "error", "warning", "info", "debug"],
                        help="uvicorn log level (default: info)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    errors = []
    if args.port is not None and not 1 <= args.port <= 65535:
        errors.append(f"--port {args.port} must be within 1..65535")
    if args.period is not None and args.period <= 0:
        errors.append(f"--period {args.period} must be > 0")
    if args.fault_rate is not None and not 0 <= args.fault_rate <= 1:
        errors.append(f"--fault-rate {args.fault_rate} must be within 0..1")
    if args.rows_per_batch is not None and args.rows_per_batch < 1:
        errors.append(f"--rows-per-batch {args.rows_per_batch} must be >= 1")
    if errors:
        print("error: " + "; ".join(errors), file=sys.stderr)
        return 2

    import uvicorn  # after argument checks, so --help and mistakes answer at once

    from lakehouse.settings import load_settings
    from lakehouse.simulator.app import create_app

    try:
        settings = load_settings()
        app = create_app(settings, seed=args.seed, period_seconds=args.period,
                         fault_rate=args.fault_rate, rows_per_batch=args.rows_per_batch,
                         state_file=args.state_file)
    except LakehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    host = args.host or settings.host
    port = args.port or settings.simulator_port
    cfg = app.state.simulator.config
    print(f"batch API simulator on http://{host}:{port} (docs at /docs): seed {cfg.seed}, "
          f"period {cfg.period_seconds:g} s, {cfg.rows_per_batch} rows a batch, fault rate "
          f"{cfg.fault_rate:g}, state {cfg.state_file}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
