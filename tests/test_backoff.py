"""The reconnect schedule: the seed's numbers and the properties around them."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, strategies as st

from trio_ws_bus import Backoff

SEED_SCHEDULE = [1.0, 2.0, 4.0, 8.0, 16.0] + [30.0] * 15


def test_defaults_reproduce_the_seed_schedule() -> None:
    """Defaults give 1, 2, 4, 8, 16 s, then 30 s, for exactly 20 retries."""
    assert list(Backoff().delays()) == SEED_SCHEDULE


def test_delay_far_past_the_cap_does_not_overflow() -> None:
    """A huge retry index still answers max_delay instead of overflowing."""
    assert Backoff().delay(10**6) == 30.0
    assert Backoff(factor=1.5).delay(10**9) == 30.0


@pytest.mark.parametrize(
    ("base", "factor", "max_delay", "index"),
    [(0.011, 3.0, 0.099, 2), (0.011, 3.0, 0.891, 4)],
)
def test_the_cap_is_reported_exactly(
    base: float, factor: float, max_delay: float, index: int
) -> None:
    """Where base * factor ** i reaches the cap, the delay is max_delay to the bit.

    (In floats 0.011 * 3.0 ** 2 is 0.09899999999999999.)
    """
    backoff = Backoff(base=base, factor=factor, max_delay=max_delay)
    assert backoff.delay(index) == max_delay
    assert backoff.delay(index - 1) < max_delay


def test_negative_index_is_rejected() -> None:
    """delay(-1) is a caller bug and says so."""
    with pytest.raises(ValueError, match="retry_index"):
        Backoff().delay(-1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"base": -1.0}, "base"),
        ({"base": math.nan}, "base"),
        ({"factor": 0.5}, "factor"),
        ({"max_delay": 0.5}, "max_delay"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 2.5}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
        ({"jitter": 1.5}, "jitter"),
        ({"reset_after": -3.0}, "reset_after"),
        ({"max_delay": math.inf}, "max_delay"),
        ({"max_delay": math.nan}, "max_delay"),
        ({"base": 0.0, "max_delay": -1.0}, "max_delay"),
    ],
)
def test_nonsense_settings_are_rejected(kwargs: dict[str, float], match: str) -> None:
    """Validators reject values no schedule could mean."""
    with pytest.raises(ValueError, match=match):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_max_retries_none_is_a_schedule_without_end() -> None:
    """max_retries=None: delays() never ends; it climbs to max_delay and stays."""
    backoff = Backoff(max_retries=None)
    assert backoff.max_retries is None
    delays = list(itertools.islice(backoff.delays(), 1000))
    assert delays[:7] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert delays[5:] == [30.0] * 995
    assert Backoff().max_retries == 20


backoffs = st.builds(
    Backoff,
    base=st.floats(0.0, 10.0),
    factor=st.floats(1.0, 5.0),
    max_delay=st.floats(10.0, 120.0),
    max_retries=st.integers(0, 60),
)


@given(backoffs)
def test_schedule_is_monotone_capped_and_sized(backoff: Backoff) -> None:
    """Without jitter: never decreasing, capped, exactly max_retries delays."""
    delays = list(backoff.delays())
    assert len(delays) == backoff.max_retries
    assert all(0 <= d <= backoff.max_delay for d in delays)
    assert all(a <= b for a, b in itertools.pairwise(delays))
    if delays:
        assert delays[0] == min(backoff.base, backoff.max_delay)


@given(
    jitter=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32),
    index=st.integers(0, 40),
)
def test_jitter_stays_in_documented_bounds(
    jitter: float, seed: int, index: int
) -> None:
    """With jitter j a delay lies in [(1 - j) d, d] where d is the plain delay."""
    plain = Backoff().delay(index)
    jittered = Backoff(jitter=jitter, rng=random.Random(seed)).delay(index)
    assert (1 - jitter) * plain - 1e-9 <= jittered <= plain


@given(seed=st.integers(0, 2**32), jitter=st.floats(0.01, 1.0))
def test_same_seed_gives_the_same_delays(seed: int, jitter: float) -> None:
    """Two policies seeded alike produce identical jittered schedules."""
    first = list(Backoff(jitter=jitter, rng=random.Random(seed)).delays())
    second = list(Backoff(jitter=jitter, rng=random.Random(seed)).delays())
    assert first == second


def test_backoff_is_a_frozen_value() -> None:
    """Backoff compares by settings and cannot be mutated."""
    assert Backoff() == Backoff()
    with pytest.raises(AttributeError):
        Backoff().base = 2.0  # type: ignore[misc]
