"""A loss plot image from a run's loss CSV: loss and its moving average by step, the learning rate on a second axis."""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

LOSS_LOG_NAME = "loss.csv"  # the file train.loop writes into the run's log folder
VALIDATION_LOG_NAME = "validation.csv"  # train.validation's, beside it when the run validates
MAX_WINDOW = 100


@dataclass
class LossSeries:
    """The usable rows of a loss CSV, sorted by step (a resumed run's file holds earlier rows too)."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    rates: list[float | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.steps)


@dataclass
class ValidationSeries:
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.steps)

    def best(self) -> tuple[int, float] | None:
        if not self.steps:
            return None
        i = min(range(len(self.losses)), key=self.losses.__getitem__)
        return self.steps[i], self.losses[i]


def loss_log_path(log_dir: str | os.PathLike) -> Path:
    return Path(log_dir) / LOSS_LOG_NAME


def read_validation_log(path: str | os.PathLike) -> ValidationSeries:
    """step/val_loss rows of a validation.csv (bad rows skipped; a missing file is an empty series)."""
    rows: dict[int, float] = {}
    try:
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                try:
                    step, loss = int(float(row["step"])), float(row["val_loss"])
                except (KeyError, TypeError, ValueError):
                    continue
                if math.isfinite(loss):
                    rows[step] = loss
    except (OSError, UnicodeDecodeError, csv.Error):
        return ValidationSeries()
    return ValidationSeries(sorted(rows), [rows[s] for s in sorted(rows)])


def read_loss_log(path: str | os.PathLike) -> LossSeries:
    """Read step/loss/lr columns; rows that are incomplete or not finite numbers are skipped, not fatal.

    A missing or unreadable file gives an empty series (the run may not have flushed its first rows yet).
    """
    rows: dict[int, tuple[float, float | None]] = {}
    try:
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                try:
                    step = int(float(row["step"]))
                    loss = float(row["loss"])
                except (KeyError, TypeError, ValueError):
                    continue
                if not math.isfinite(loss):
                    continue
                rows[step] = (loss, _number(row.get("lr")))  # a repeated step: the later row wins
    except (OSError, UnicodeDecodeError, csv.Error):
        return LossSeries()
    series = LossSeries()
    for step in sorted(rows):
        series.steps.append(step)
        series.losses.append(rows[step][0])
        series.rates.append(rows[step][1])
    return series


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def default_window(n_points: int) -> int:
    """About a tenth of the run, between 2 and MAX_WINDOW steps: smooth enough to show the trend early and late."""
    return max(2, min(MAX_WINDOW, n_points // 10))


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over the last `window` values (fewer at the start), one output per input."""
    if window < 1:
        raise ValueError(f"window must be at least 1 (got {window})")
    out: list[float] = []
    total = 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def render_loss_plot(
    source: str | os.PathLike | LossSeries,
    *,
    title: str = "",
    window: int | None = None,
    size: tuple[float, float] = (7.0, 3.5),
    dpi: int = 100,
    validation: ValidationSeries | None = None,
    transparent: bool = False,
    scores: Any = None,
) -> Image.Image | None:
    """The plot as an RGB PIL image, or None when there is nothing to plot yet.

    The validation loss (and its best check) is drawn too: `validation`, or the validation.csv beside a loss CSV;
    and the preview scores (train.scoring.ScoreSeries, or the preview_scores.jsonl beside it) in a panel below.
    `transparent`: an RGBA image with no background and grey text and axes, readable on a light page and a
    dark one alike (the tab follows the page's theme without knowing it).

    Uses matplotlib's Agg canvas on a private Figure (no pyplot), so it is safe from worker threads and
    leaves the host's matplotlib backend alone.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    series = source if isinstance(source, LossSeries) else read_loss_log(source)
    if not len(series):
        return None
    if validation is None and not isinstance(source, LossSeries):
        validation = read_validation_log(Path(source).with_name(VALIDATION_LOG_NAME))
    if scores is None and not isinstance(source, LossSeries):
        from embed_studio.train.scoring import SCORE_LOG_NAME, read_score_log

        scores = read_score_log(Path(source).with_name(SCORE_LOG_NAME))
    window = window or default_window(len(series))
    scored = scores is not None and len(scores) > 0
    fig = Figure(figsize=(size[0], size[1] * 1.5) if scored else size, dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    if scored:
        ax, score_ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    else:
        ax, score_ax = fig.add_subplot(1, 1, 1), None
    marker = "o" if len(series) <= 20 else None  # a handful of points would otherwise be invisible
    ax.plot(series.steps, series.losses, color="#9ab8d8", linewidth=0.8, marker=marker, markersize=3, label="loss")
    if len(series) >= 2:
        average = moving_average(series.losses, window)
        ax.plot(series.steps, average, color="#1f5fa8", linewidth=2.0, label=f"mean of {window} steps")
    best = validation.best() if validation else None
    if validation and best:
        ax.plot(
            validation.steps, validation.losses, color="#15803d", linewidth=1.5, marker="o", markersize=3,
            label="validation",
        )  # fmt: skip
        ax.plot([best[0]], [best[1]], color="#15803d", marker="*", markersize=12, linestyle="none", label="best")
    if score_ax is None:  # else the score panel below carries the step axis
        ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss")
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    rate_points = [(s, r) for s, r in zip(series.steps, series.rates, strict=True) if r is not None]
    if rate_points:
        lr_ax = ax.twinx()
        lr_ax.plot(
            [s for s, _ in rate_points], [r for _, r in rate_points], color="#d97706", linewidth=1.2,
            drawstyle="steps-post", label="learning rate",
        )  # fmt: skip
        lr_ax.set_ylabel("learning rate", color="#d97706")
        lr_ax.tick_params(axis="y", colors="#d97706")
        lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        lr_handles, lr_labels = lr_ax.get_legend_handles_labels()
        handles, labels = handles + lr_handles, labels + lr_labels
    legend = ax.legend(handles, labels, loc="upper right", fontsize="small")
    last = f"step {series.steps[-1]}, loss {series.losses[-1]:.4f}"
    if best:
        last += f", best validation {best[1]:.4f} at step {best[0]}"
    if score_ax is not None:
        top = _draw_scores(score_ax, scores)
        last += f", best preview score {top[1]:g}/{scores.of} at step {top[0]}"
    return finish_figure(fig, canvas, legend, f"{title} · {last}" if title else last, transparent)


def finish_figure(fig: Any, canvas: Any, legend: Any, suptitle: str, transparent: bool) -> Any:
    """Title, theme and render a plot as a PIL image: RGBA with neutral colours when `transparent` (it then reads
    on the light and the dark theme), else RGB on white."""
    from PIL import Image

    fig.suptitle(suptitle, fontsize="medium")
    if transparent:
        _neutral_colours(fig, legend)
    fig.tight_layout()
    canvas.draw()
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    return image.copy() if transparent else image.convert("RGB")


SCORE_COLOUR = "#a21caf"


def _draw_scores(ax: Any, scores: Any) -> tuple[int, float]:
    """Character tags shown per scored step, the best one starred; returns that (step, score)."""
    from matplotlib.ticker import MaxNLocator

    best = scores.best()
    ax.plot(
        scores.steps, scores.scores, color=SCORE_COLOUR, linewidth=1.5, marker="o", markersize=4, label="preview score"
    )
    ax.plot([best[0]], [best[1]], color=SCORE_COLOUR, marker="*", markersize=12, linestyle="none", label="best score")
    ax.set_ylim(-0.2, max(scores.of, max(scores.scores)) + 0.5)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"tags of {scores.of}")
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small").get_frame().set_alpha(0.0)
    return best


def plot_inputs_key(log_dir: str | os.PathLike) -> Any:
    """What the plot is drawn from, as file stamps: a change means redraw. None when there is no loss log yet."""
    from embed_studio.train.scoring import SCORE_LOG_NAME

    stamps = []
    for name in (LOSS_LOG_NAME, VALIDATION_LOG_NAME, SCORE_LOG_NAME):
        try:
            stat = (Path(log_dir) / name).stat()
            stamps.append((stat.st_mtime_ns, stat.st_size))
        except OSError:
            if name == LOSS_LOG_NAME:
                return None
            stamps.append(None)
    return tuple(stamps)


NEUTRAL = "#8a8f98"  # mid grey: legible on white and on the dark theme's near-black


def _neutral_colours(fig: Any, legend: Any) -> None:
    fig.patch.set_alpha(0.0)
    for text in fig.texts:
        text.set_color(NEUTRAL)
    for ax in fig.axes:
        ax.patch.set_alpha(0.0)
        for spine in ax.spines.values():
            spine.set_color(NEUTRAL)
        ax.tick_params(axis="x", colors=NEUTRAL)
        if ax.get_ylabel() != "learning rate":  # the rate axis keeps its own orange
            ax.tick_params(axis="y", colors=NEUTRAL)
            ax.yaxis.label.set_color(NEUTRAL)
        ax.xaxis.label.set_color(NEUTRAL)
        own = ax.get_legend()
        if own is not None and own is not legend:  # the score panel's
            for text in own.get_texts():
                text.set_color(NEUTRAL)
    legend.get_frame().set_alpha(0.0)
    legend.get_frame().set_edgecolor(NEUTRAL)
    for text in legend.get_texts():
        text.set_color(NEUTRAL)


def loss_plot_png(source: str | os.PathLike | LossSeries, **options) -> bytes | None:
    """The plot as PNG bytes (for an API or a file written with fileio.atomic_write_bytes)."""
    image = render_loss_plot(source, **options)
    if image is None:
        return None
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
