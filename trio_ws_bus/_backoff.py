"""The reconnect delay schedule, as a pure value: no clock, no I/O."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator

import attrs

__all__ = ["Backoff"]


def _non_negative(
    instance: object, attribute: attrs.Attribute[float], value: float
) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"{attribute.name} must be a finite number >= 0, got {value!r}"
        )


def _check_factor(
    instance: object, attribute: attrs.Attribute[float], value: float
) -> None:
    if not math.isfinite(value) or value < 1:
        raise ValueError(f"factor must be a finite number >= 1, got {value!r}")


def _at_least_base(
    instance: Backoff, attribute: attrs.Attribute[float], value: float
) -> None:
    if value < instance.base:
        raise ValueError(f"max_delay ({value!r}) must be >= base ({instance.base!r})")


def _check_retries(instance: object, attribute: object, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"max_retries must be an int >= 0 or None, got {value!r}")


def _check_jitter(
    instance: object, attribute: attrs.Attribute[float], value: float
) -> None:
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise ValueError(f"jitter must be between 0 and 1, got {value!r}")


@attrs.frozen
class Backoff:
    """How long to wait before each reconnect attempt, and how many to make.

    The delay before retry ``i`` (counting from 0) is::

        d(i) = min(base * factor ** i, max_delay)
        delay(i) = d(i) * (1 - jitter * u),  u uniform in [0, 1)

    so jitter only ever shortens a delay, by at most ``jitter * d(i)``, and a
    schedule never exceeds ``max_delay``. The defaults reproduce the browser
    client's schedule: 1, 2, 4, 8, 16, 30, 30, ... seconds for 20 retries.

    Attributes:
        base: Delay before the first retry, in seconds (``>= 0``).
        factor: Growth per retry (``>= 1``).
        max_delay: Cap on any delay, in seconds (``>= base``).
        max_retries: Retries after failures before the manager gives up; the
            first attempt is not a retry, so at most ``max_retries + 1`` attempts
            are made in a row. ``None`` retries forever (for a service): the
            manager then never gives up on its own, only on a failure its retry
            policy calls fatal (a 403, say); events and statistics still count
            every retry.
        jitter: Fraction of each delay that may be randomly removed (0 to 1).
            Spreads reconnects of many clients after a server restart.
        reset_after: Seconds a connection must stay up before the retry count
            and the delay go back to the start. The default, 0, resets them on
            every successful handshake, as the browser client, websockets,
            socket.io and centrifuge do. A value above 0 is an opt-in defence
            against a server that accepts and at once drops (or resends a
            message that kills every connection): shorter connections then
            count like failed attempts, so such a server is retried on the
            backoff schedule and the manager gives up after ``max_retries``.
        rng: The random source for jitter; pass ``random.Random(seed)`` for a
            reproducible schedule.
    """

    base: float = attrs.field(default=1.0, validator=_non_negative)
    factor: float = attrs.field(default=2.0, validator=_check_factor)
    max_delay: float = attrs.field(
        default=30.0, validator=[_non_negative, _at_least_base]
    )
    max_retries: int | None = attrs.field(default=20, validator=_check_retries)
    jitter: float = attrs.field(default=0.0, validator=_check_jitter)
    reset_after: float = attrs.field(default=0.0, validator=_non_negative)
    rng: random.Random = attrs.field(
        factory=random.Random, eq=False, repr=False, kw_only=True
    )

    def delay(self, retry_index: int) -> float:
        """The delay in seconds before retry number ``retry_index`` (from 0).

        Raises:
            ValueError: If ``retry_index`` is negative.
        """
        if retry_index < 0:
            raise ValueError(f"retry_index must be >= 0, got {retry_index!r}")
        # Compare exponents rather than computing factor ** i, which overflows
        # for large indices long after the cap was reached.
        capped = (
            self.factor > 1
            and self.base > 0
            and retry_index >= math.log(self.max_delay / self.base, self.factor)
        )
        delay = (
            self.max_delay
            if capped
            else min(self.base * self.factor**retry_index, self.max_delay)
        )
        if self.jitter:
            delay *= 1.0 - self.jitter * self.rng.random()
        return delay

    def delays(self) -> Iterator[float]:
        """Yield the delays of one budget: exactly ``max_retries`` of them.

        With ``max_retries=None`` it never ends: bound it with
        ``itertools.islice``.
        """
        retries = (
            itertools.count() if self.max_retries is None else range(self.max_retries)
        )
        for retry_index in retries:
            yield self.delay(retry_index)
