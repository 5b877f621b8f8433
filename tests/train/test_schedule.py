"""LR schedules: the WebUI syntax (good and malformed) and cosine annealing with warmup and restarts."""

import math

import pytest

from embed_studio.errors import UserInputError
from embed_studio.train.schedule import CosineSchedule, parse_step_schedule


def test_pairs_hold_until_their_step():
    s = parse_step_schedule("0.0005:5000, 0.0001:10000")
    assert s.rate_at(0) == 0.0005
    assert s.rate_at(4999) == 0.0005
    assert s.rate_at(5000) == 0.0001
    assert s.rate_at(9999) == 0.0001
    assert s.rate_at(10000) is None  # the WebUI stops training when its schedule runs out
    assert s.end_step() == 10000


def test_bare_last_rate_holds_forever():
    s = parse_step_schedule("0.005:100, 1e-5")
    assert s.rate_at(99) == 0.005
    assert s.rate_at(10**6) == 1e-5
    assert s.end_step() is None
    assert parse_step_schedule("0.001:10, 0.0001:-1").rate_at(500) == 0.0001
    assert parse_step_schedule("0.005").rate_at(123) == 0.005


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "empty"),
        ("fast", "'fast' is not a number"),
        ("0.001:abc", "'abc' is not a whole step number"),
        ("0.001:100, 0.0001:50", "must be greater than 100"),
        ("0.001, 0.0001:100", "never be used"),
        ("0.001:1:2", "more than one ':'"),
        ("-0.1", "positive"),
        ("0.001:100,,0.1", "entry 2 is empty"),
    ],
)
def test_malformed_schedules_say_what_is_wrong(text, fragment):
    with pytest.raises(UserInputError) as err:
        parse_step_schedule(text)
    assert fragment in str(err.value)


def test_cosine_warmup_then_anneal_then_restart():
    s = CosineSchedule(max_lr=1.0, min_lr=0.0, cycle_steps=10, warmup_steps=2, gamma=0.5)
    assert s.rate_at(0) == pytest.approx(0.5)
    assert s.rate_at(1) == pytest.approx(1.0)
    assert s.rate_at(2) == pytest.approx(1.0)  # cosine starts at the peak
    assert s.rate_at(6) == pytest.approx((1 + math.cos(math.pi * 4 / 8)) / 2)
    assert s.rate_at(9) < s.rate_at(6)
    # Restart: warmup again, to half the peak.
    assert s.rate_at(11) == pytest.approx(0.5)
    assert s.locate(10) == (1, 0, 10)


def test_cosine_cycle_mult_lengthens_cycles():
    s = CosineSchedule(max_lr=1.0, cycle_steps=4, cycle_mult=2.0)
    assert s.locate(4) == (1, 0, 8)
    assert s.locate(12) == (2, 0, 16)


def test_cosine_rejects_warmup_longer_than_cycle():
    with pytest.raises(UserInputError, match="Warmup"):
        CosineSchedule(max_lr=1.0, cycle_steps=5, warmup_steps=5)
