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


def seconds(text: str) -> float:
    """The length of one interval: the period, or the time between two cron ticks (the
    shortest of the next few, for an irregular expression)."""
    delta = period(text)
    if delta is not None:
        return delta.total_seconds()
    from datetime import datetime, timezone

    from croniter import croniter

    ticks = croniter(text, datetime(2026, 1, 1, tzinfo=timezone.utc))
    times = [ticks.get_next(datetime) for _ in range(6)]
    return min((b - a).total_seconds() for a, b in zip(times, times[1:]))


def follow_window(text: str) -> tuple[float, float]:
    """(follow, poll) seconds for a scheduled ingestion run: it waits for its batch for up to
    80% of the interval (it ends before the next run is due), polling 15 times an interval,
    every 1 s at least and 15 s at most."""
    every = seconds(text)
    return round(0.8 * every, 1), round(min(15.0, max(1.0, every / 15)), 1)


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
