"""Schedules as the settings write them: a cron expression, or a fixed period like `30s`.

Scope: parses and validates; imports nothing from Airflow, so the settings can use it.
"""

from __future__ import annotations

import re
from datetime import timedelta

_PERIOD = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def period(text: str) -> timedelta | None:
    """`30s`, `5m`, `2h`, `7d` -> timedelta; anything else -> None (a cron expression)."""
    m = _PERIOD.match(text.strip())
    if not m:
        return None
    return timedelta(**{_UNIT[m.group(2)]: float(m.group(1))})


def check(text: str) -> str:
    """The schedule unchanged, or ValueError naming what is wrong."""
    delta = period(text)
    if delta is not None:
        if delta < timedelta(seconds=10):
            raise ValueError(f"{text!r}: a period shorter than 10s would queue runs faster than they start")
        return text
    from croniter import croniter  # Airflow's own cron parser (a dependency of apache-airflow)

    if not croniter.is_valid(text):
        raise ValueError(f"{text!r} is neither a cron expression (like '*/5 * * * *') "
                         "nor a period (like '30s', '5m', '1h')")
    return text
