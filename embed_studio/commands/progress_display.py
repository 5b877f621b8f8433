"""The CLI's progress display for fetch, tag and train: a redrawn bar on a terminal, plain lines elsewhere.

The words come from embed_studio.progress (shared with the UI); this module only lays them out, decides when
to write, runs the job with Ctrl-C/SIGTERM cancelling it, and keeps library chatter off the terminal.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any, TextIO

from embed_studio.jobs import Job, JobStatus
from embed_studio.progress import DRAWING, KEEP_BAR, STAGE, StatusParts, status_parts

# Seconds between plain progress lines (logs, pipes, CI); 0 writes every change. Tests set it.
INTERVAL_ENV = "EMBED_STUDIO_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 5.0
REDRAW_INTERVAL = 0.1  # a terminal bar is redrawn at most this often (a step can take milliseconds)
POLL_SECONDS = 0.5  # between job events the line is refreshed this often (rate and ETA move with the clock)
# Set by `--verbose`: library logging and warnings are left as the libraries make them (standalone backend too).
VERBOSE_ENV = "EMBED_STUDIO_VERBOSE"


def progress_interval() -> float:
    text = os.environ.get(INTERVAL_ENV, "").strip()
    try:
        value = float(text) if text else DEFAULT_INTERVAL
    except ValueError:
        return DEFAULT_INTERVAL
    return value if math.isfinite(value) and value >= 0 else DEFAULT_INTERVAL


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (OSError, ValueError, AttributeError):
        return int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else 80


def _bar(fraction: float, width: int, fill: str, empty: str) -> str:
    filled = int(round(fraction * width))
    return "|" + fill * filled + empty * (width - filled) + "|"


def fit_line(parts: StatusParts, width: int, fill: str = "█", empty: str = "░") -> str:
    """The count, a bar (when the total is known) and as many other parts as fit in `width` columns.

    Parts go in order of their keep rank (the free text first, the count never); what still does not fit is cut
    with '…'. A line as wide as the terminal would wrap, and a wrapped line cannot be redrawn with \\r.
    """
    width = max(1, width)
    bar = None
    pieces: list[tuple[str, int]] = [(parts.count, 10**6)]
    if parts.fraction is not None:
        bar = _bar(parts.fraction, max(10, min(30, width // 5)), fill, empty)
        pieces.append((bar, KEEP_BAR))
    # A line break inside a part (a multi-line error) would leave the redrawn line for good.
    pieces += [(" ".join(p.text.split()), p.keep) for p in parts.rest]

    def join(items: list[tuple[str, int]]) -> str:
        # The bar sits between the count and the rest with plain spaces; the rest are separated as in the status line.
        out, previous = items[0][0], items[0][0]
        for text, _ in items[1:]:
            out += (" " if bar in (text, previous) else " · ") + text
            previous = text
        return out

    while len(join(pieces)) > width and len(pieces) > 1:
        weakest = min(range(1, len(pieces)), key=lambda i: pieces[i][1])
        pieces.pop(weakest)
    line = join(pieces)
    return line if len(line) <= width else line[: width - 1] + "…"


class ProgressDisplay:
    """Shows a job's status on `stream` (stderr): one redrawn line on a terminal, else a line every `interval` s.

    Plain lines are also written when the line's kind changes (a setup stage begins or ends, a preview is
    drawn) and at the end, so a log shows each phase; they never hold a carriage return. Output that has gone
    away (a closed pipe) silences the display, never the job.
    """

    def __init__(
        self, unit: str = "it", stream: TextIO | None = None, interval: float | None = None, tty: bool | None = None,
        columns: int | None = None,
    ):  # fmt: skip
        self.unit = unit
        self.columns = columns  # None: the terminal's width, asked at each redraw (a window can be resized)
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _isatty(self.stream) if tty is None else tty
        self.interval = progress_interval() if interval is None else interval
        encoding = getattr(self.stream, "encoding", None) or "ascii"
        try:
            "█░·".encode(encoding)
            self._glyphs = ("█", "░")
        except (UnicodeEncodeError, LookupError):
            self._glyphs = ("#", "-")
        # Reentrant: a Ctrl-C handler runs on the main thread, possibly while it is drawing.
        self._lock = threading.RLock()
        self._shown = ""  # the line on the terminal now (tty) or the last one written (plain)
        self._kind: tuple | None = None
        self._when = -math.inf
        self._gone = False
        self._status: JobStatus | None = None

    def update(self, status: JobStatus) -> None:
        """A job listener: draw `status` if it is due."""
        with self._lock:
            self._status = status
            parts = status_parts(status, self.unit)
            kind = (parts.count.split(" ")[0], bool(status.stats.get(STAGE)), bool(status.stats.get(DRAWING)))
            now = time.monotonic()
            changed_kind = kind != self._kind
            if self.tty:
                if changed_kind or now - self._when >= min(REDRAW_INTERVAL, self.interval):
                    self._draw(parts)
                    self._kind, self._when = kind, now
            else:
                line = parts.line()
                if line != self._shown and (changed_kind or now - self._when >= self.interval):
                    self._write(line + "\n")
                    self._shown, self._kind, self._when = line, kind, now

    def message(self, text: str) -> None:
        """A line of its own (a warning, a note) above the bar; the bar is drawn again below it."""
        with self._lock:
            if self.tty and self._shown:
                self._write("\r" + " " * len(self._shown) + "\r" + text + "\n" + "\r" + self._shown)
            else:
                self._write(text + "\n")

    def close(self, status: JobStatus | None = None) -> None:
        """Draw the final status and end the line, so what follows starts on a line of its own."""
        with self._lock:
            status = status or self._status
            if status is None:
                return
            parts = status_parts(status, self.unit)
            if self.tty:
                self._draw(parts)
                self._write("\n")
                self._shown = ""
            elif parts.line() != self._shown:
                self._write(parts.line() + "\n")
                self._shown = parts.line()

    def _draw(self, parts: StatusParts) -> None:
        line = fit_line(parts, (self.columns or _columns(self.stream)) - 1, *self._glyphs)
        # Spaces over the rest of a longer previous line: no terminal escape codes needed.
        self._write("\r" + line + " " * max(0, len(self._shown) - len(line)))
        self._shown = line

    def _write(self, text: str) -> None:
        if self._gone:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the reader went away (closed pipe or file): stay quiet, let the job finish
            self._gone = True


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def run_job(job: Job, display: ProgressDisplay, stopping: str, still_stopping: str) -> list[int]:
    """Run `job` in a thread with its progress on `display`; Ctrl-C/SIGTERM cancel it. Returns the signals received.

    `stopping` is said at the first signal (what the job does now, e.g. saving), `still_stopping` at later ones.
    """
    job.add_listener(display.update)
    with stop_signals_cancel(job, lambda text: display.message(text), stopping, still_stopping) as received:
        job.start()
        while not job.wait(POLL_SECONDS):
            display.update(job.status())
    display.close(job.status())
    return received


def cancelled_exit_code(received: list[int]) -> int:
    """What a shell reports for a command ended by that signal (130 for Ctrl-C)."""
    return 128 + (received[0] if received else signal.SIGINT)


@contextlib.contextmanager
def stop_signals_cancel(job: Any, say: Any, stopping: str, still_stopping: str) -> Iterator[list[int]]:
    """Ctrl-C and SIGTERM cancel the job, which finishes what it must (a save, the files in flight); later
    signals only say it is still doing that. Yields the signals received.

    Without this SIGTERM killed a training without a save, and a second Ctrl-C while saving left the interpreter
    with the job's thread still running (abort, exit 134).
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def stop(signum: int, frame: Any) -> None:
        if not received:
            say(stopping)
            job.cancel()
        else:
            say(still_stopping)
        received.append(signum)

    stop_signals = [signal.SIGINT, signal.SIGTERM]
    previous = {sig: signal.signal(sig, stop) for sig in stop_signals}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def configure_library_output(verbose: bool) -> None:
    """Keep other packages' Python warnings (FutureWarning, deprecations) off the CLI unless --verbose.

    transformers/diffusers logging is quieted around each model load (backends.standalone.quiet_model_libraries)
    and onnxruntime's by the tag command; both read VERBOSE_ENV, which this sets or clears for the run.
    """
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
        return
    os.environ.pop(VERBOSE_ENV, None)
    # Embed Studio says what a user must know in its own lines, never through `warnings`; a library's warning is
    # often attributed to our line that called it (stacklevel), so these go whatever module they name.
    for category in (FutureWarning, DeprecationWarning, PendingDeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)


def is_verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"
