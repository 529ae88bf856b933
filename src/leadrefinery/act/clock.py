"""Clocks: where routing, SLAs and nurture sequences get "now" from.

Everything in `act/` takes a clock instead of calling `datetime.now()`, so tests (and
backfills) can run a month of nurture mail in a second:

    clock = ManualClock(datetime(2026, 3, 2, 9, 0))
    tick(engine, settings, clock=clock); clock.advance(days=3); tick(engine, settings, clock=clock)

Times are naive UTC, like every TIMESTAMP in the store.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """The real time, as naive UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC).replace(tzinfo=None)


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime) -> None:
        self._now = as_utc_naive(start)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        self._now = as_utc_naive(when)

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """`advance(days=3)` or `advance(timedelta(hours=2))`; returns the new time."""
        self._now += (delta or timedelta()) + timedelta(**kwargs)
        return self._now


def as_utc_naive(when: datetime) -> datetime:
    """An aware time converted to UTC, without its tzinfo; a naive time is taken as UTC."""
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when


def resolve_now(now: datetime | None = None, clock: Clock | None = None) -> datetime:
    """An explicit `now` wins over a clock; neither = the system clock."""
    if now is not None:
        return as_utc_naive(now)
    return (clock or SystemClock()).now()
