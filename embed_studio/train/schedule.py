"""Learning-rate schedules: the WebUI's "rate:step, rate:step, rate" syntax and cosine annealing with restarts.

Both are pure functions of the step number, so a resumed run lands on exactly the same rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from embed_studio.errors import UserInputError

_SYNTAX_HELP = (
    'Write it like the WebUI does: a number ("0.005"), or rate:until-step pairs ("0.0005:5000, 0.0001:10000"), '
    "optionally ending with a bare rate (or rate:-1) that holds for the rest of the run."
)


@dataclass(frozen=True)
class StepSchedule:
    """Rates that each hold until a step: pieces[i] = (rate, end_step); end_step None = to the end."""

    pieces: tuple[tuple[float, int | None], ...]
    text: str = ""

    def rate_at(self, step: int) -> float | None:
        """The rate for the step that follows `step` completed steps, or None once the schedule has ended."""
        for rate, end in self.pieces:
            if end is None or step < end:
                return rate
        return None

    def end_step(self) -> int | None:
        """The step count at which the schedule runs out (the WebUI stops training there); None = never."""
        return self.pieces[-1][1] if self.pieces else None

    @property
    def first_rate(self) -> float:
        return self.pieces[0][0]


def parse_step_schedule(text: str, what: str = "Learning rate") -> StepSchedule:
    """Parse the WebUI's schedule syntax; raise UserInputError naming the bad part."""
    if text is None or not str(text).strip():
        raise UserInputError(f"{what} is empty. {_SYNTAX_HELP}")
    text = str(text).strip()
    parts = [p.strip() for p in text.split(",")]
    pieces: list[tuple[float, int | None]] = []
    last_end = 0
    for index, part in enumerate(parts):
        if not part:
            if index == len(parts) - 1:
                continue  # a trailing comma is harmless
            raise UserInputError(f"{what} {text!r}: entry {index + 1} is empty. {_SYNTAX_HELP}")
        if pieces and pieces[-1][1] is None:
            raise UserInputError(
                f"{what} {text!r}: {part!r} comes after a rate with no end step, so it would never be used. "
                "Give the earlier rate an end step (rate:step) or remove the later entries."
            )
        fields = part.split(":")
        if len(fields) > 2:
            raise UserInputError(f"{what} {text!r}: {part!r} has more than one ':'. {_SYNTAX_HELP}")
        try:
            rate = float(fields[0])
        except ValueError:
            raise UserInputError(f"{what} {text!r}: {fields[0].strip()!r} is not a number. {_SYNTAX_HELP}") from None
        if not math.isfinite(rate) or rate < 0:
            raise UserInputError(f"{what} {text!r}: the rate {fields[0].strip()!r} must be a positive number.")
        if len(fields) == 1:
            pieces.append((rate, None))
            continue
        try:
            end = int(fields[1])
        except ValueError:
            raise UserInputError(
                f"{what} {text!r}: {fields[1].strip()!r} is not a whole step number. {_SYNTAX_HELP}"
            ) from None
        if end == -1:
            pieces.append((rate, None))
            continue
        if end <= last_end:
            raise UserInputError(
                f"{what} {text!r}: step {end} must be greater than {last_end}; the steps must increase left to right."
            )
        pieces.append((rate, end))
        last_end = end
    if not pieces:
        raise UserInputError(f"{what} is empty. {_SYNTAX_HELP}")
    return StepSchedule(tuple(pieces), text)


@dataclass(frozen=True)
class CosineSchedule:
    """Cosine annealing from max_lr to min_lr, with a linear warmup at the start of every cycle.

    Cycle k lasts cycle_steps * cycle_mult**k steps and peaks at max_lr * gamma**k (restarts).
    """

    max_lr: float
    min_lr: float = 0.0
    cycle_steps: int = 1000
    warmup_steps: int = 0
    cycle_mult: float = 1.0
    gamma: float = 1.0

    def __post_init__(self) -> None:
        if self.cycle_steps < 1:
            raise UserInputError(f"Cosine cycle length {self.cycle_steps} must be at least 1 step.")
        if not 0 <= self.warmup_steps < self.cycle_steps:
            raise UserInputError(
                f"Warmup of {self.warmup_steps} steps must be shorter than the cosine cycle ({self.cycle_steps} steps)."
            )
        if self.cycle_mult < 1:
            raise UserInputError(f"Cycle multiplier {self.cycle_mult} must be 1 or more.")
        if not 0 < self.gamma <= 1:
            raise UserInputError(f"Restart decay (gamma) {self.gamma} must be in (0, 1].")
        if self.min_lr < 0 or self.max_lr < self.min_lr:
            raise UserInputError(f"Cosine rates need 0 <= min ({self.min_lr}) <= max ({self.max_lr}).")

    def locate(self, step: int) -> tuple[int, int, int]:
        """(cycle index, position in the cycle, cycle length) of `step` completed steps."""
        cycle, length, pos = 0, self.cycle_steps, step
        while pos >= length:
            pos -= length
            cycle += 1
            length = max(self.warmup_steps + 1, int(length * self.cycle_mult))
        return cycle, pos, length

    def rate_at(self, step: int) -> float:
        cycle, pos, length = self.locate(step)
        peak = self.max_lr * self.gamma**cycle
        if pos < self.warmup_steps:
            # (pos + 1) so the first warmup step already learns something even when min_lr is 0.
            return self.min_lr + (peak - self.min_lr) * (pos + 1) / self.warmup_steps
        t = (pos - self.warmup_steps) / (length - self.warmup_steps)
        return self.min_lr + (peak - self.min_lr) * (1 + math.cos(math.pi * t)) / 2

    def end_step(self) -> int | None:
        return None


def precompute_rates(schedule: StepSchedule | CosineSchedule, start: int, stop: int) -> list[float | None]:
    """Rates for steps start..stop-1, computed once before the loop."""
    return [schedule.rate_at(s) for s in range(start, stop)]
