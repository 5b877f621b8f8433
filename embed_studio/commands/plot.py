"""`embed-studio plot LOGDIR`: the run's loss plot (with the validation loss, if any) as a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="draw a run's loss (validation, preview score) plot to a PNG",
        description="Read LOGDIR/loss.csv (and validation.csv beside it) of a training run and write the loss plot "
        "the Train tab shows: the loss, its moving average, the learning rate and the validation loss with its best "
        "check, and under it the preview scores (preview_scores.jsonl, when the run scored its previews) with the best "
        "step.",
    )
    p.add_argument("log_dir", type=Path, metavar="LOGDIR", help="the run's log folder (or its loss.csv)")
    p.add_argument("--out", type=Path, help="PNG to write (default: LOGDIR/loss.png)")
    p.add_argument("--window", type=int, help="steps in the moving average (default: about a tenth of the run)")
    p.add_argument("--title", default=None, help="title above the plot (default: the folder's name)")
    p.add_argument("--size", default="7x3.5", help="WIDTHxHEIGHT in inches at 100 dpi (default 7x3.5)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from embed_studio.errors import UserInputError
    from embed_studio.fileio import atomic_write_bytes
    from embed_studio.train.lossplot import LOSS_LOG_NAME, loss_plot_png

    source = args.log_dir.expanduser()
    csv_path = source if source.suffix.lower() == ".csv" else source / LOSS_LOG_NAME
    if not csv_path.is_file():
        raise UserInputError(f"{csv_path} does not exist. Give a training run's log folder (it holds loss.csv).")
    if args.window is not None and args.window < 1:
        raise UserInputError(f"--window {args.window} must be at least 1.")
    try:
        width, height = (float(x) for x in args.size.lower().split("x"))
    except ValueError:
        raise UserInputError(f"--size {args.size!r} is not WIDTHxHEIGHT, e.g. 7x3.5.") from None
    if not (1 <= width <= 40 and 1 <= height <= 40):
        raise UserInputError(f"--size {args.size!r}: each side must be 1 to 40 inches.")
    title = args.title if args.title is not None else csv_path.parent.name
    png = loss_plot_png(csv_path, title=title, window=args.window, size=(width, height))
    if png is None:
        raise UserInputError(f"{csv_path} has no loss rows yet; train a few steps first.")
    out = (args.out or csv_path.with_name("loss.png")).expanduser()
    atomic_write_bytes(out, png)
    print(out)
    return 0
