"""`embed-studio train embedding|hypernetwork`: run the trainer headless with a live progress line."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import signal
import sys
import threading
import typing
from collections.abc import Iterator

# Short spellings for the most used settings; every other TrainConfig field is --field-name.
_ALIASES = {
    "max_steps": ["--steps"],
    "batch_size": ["--batch-size"],
    "grad_accum": ["--grad-accum", "--gradient-accumulation"],
}
_POSITIONAL = {"kind", "model", "dataset", "target", "name", "extra"}


def register(subparsers: argparse._SubParsersAction) -> None:
    from embed_studio.train.config import TrainConfig

    parser = subparsers.add_parser("train", help="train an embedding or hypernetwork")
    parser.add_argument("kind", choices=["embedding", "hypernetwork"])
    parser.add_argument("--model", required=True, help="diffusers folder or .safetensors checkpoint")
    parser.add_argument("--dataset", required=True, help="folder of images with .txt captions")
    parser.add_argument("--name", required=True, help="name of the embedding/hypernetwork (its file NAME.pt)")
    parser.add_argument("--file", help="the file to train (default: DIR/NAME.pt, DIR from --dir)")
    parser.add_argument("--dir", help="folder of the file (default ./embeddings or ./hypernetworks)")
    parser.add_argument("--config", help="JSON settings (a saved config.json); command-line options override it")
    presets = parser.add_argument_group("presets", "named training settings (not the model, data or file)")
    presets.add_argument("--preset", help="start from the saved preset NAME (after --config; options override it)")
    presets.add_argument(
        "--save-preset", metavar="NAME", help="save the resulting settings as preset NAME and exit without training"
    )
    presets.add_argument(
        "--presets-dir", help="folder of presets (default: _presets in the log root, ./textual_inversion/_presets)"
    )
    from embed_studio.train.option_help import BEYOND

    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name in _POSITIONAL or f.name in BEYOND:
            continue
        flags = [f"--{f.name.replace('_', '-')}", *_ALIASES.get(f.name, [])]
        kind = hints[f.name]
        if kind is bool:
            parser.add_argument(*flags, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        else:
            parser.add_argument(
                *flags,
                dest=f.name,
                type=kind if kind in (int, float) else str,
                default=None,
                help=f"default: {f.default!r}" if f.default is not dataclasses.MISSING else None,
            )
    _add_beyond_options(parser, hints)
    parser.set_defaults(func=_train)


def _add_beyond_options(parser: argparse.ArgumentParser, hints: dict[str, typing.Any]) -> None:
    """The options beyond the WebUI's trainer (captions, augmentation, loss, optimizers, validation), in one group."""
    from embed_studio.train.config import TrainConfig
    from embed_studio.train.option_help import BEYOND, CHOICES

    group = parser.add_argument_group(
        "beyond the WebUI's trainer", "kohya/OneTrainer-style options; every default leaves a run as it was"
    )
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for name, (_, text) in BEYOND.items():
        flag = f"--{name.replace('_', '-')}"
        kind = hints[name]
        text = f"{text} (default: {defaults[name]!r})".replace("%", "%%")
        if kind is bool:
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            group.add_argument(
                flag, dest=name, type=kind if kind in (int, float) else str, default=None, help=text,
                choices=CHOICES.get(name),
            )  # fmt: skip


def _config_from_args(args: argparse.Namespace) -> typing.Any:
    from embed_studio.train.config import TrainConfig
    from embed_studio.train.create import default_target

    base: dict = {}
    if args.config:
        base = TrainConfig.load_json(args.config).to_dict()
    if getattr(args, "preset", None):
        from embed_studio.train.presets import load_preset

        base.update(load_preset(_presets_dir(args), args.preset))
    folder = args.dir or ("embeddings" if args.kind == "embedding" else "hypernetworks")
    base.update(
        kind=args.kind,
        model=args.model,
        dataset=args.dataset,
        name=args.name,
        target=args.file or str(default_target(folder, args.name)),
    )
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if f.name not in _POSITIONAL and value is not None:
            base[f.name] = value
    return TrainConfig.from_dict(base)


def _presets_dir(args: argparse.Namespace) -> typing.Any:
    from pathlib import Path

    from embed_studio.train.presets import presets_folder

    if args.presets_dir:
        return Path(args.presets_dir).expanduser()
    return presets_folder(Path(args.log_dir).expanduser().parent if args.log_dir else Path("textual_inversion"))


def _train(args: argparse.Namespace) -> int:
    from embed_studio.backends.provider import StandaloneProvider
    from embed_studio.errors import Cancelled
    from embed_studio.progress import status_line
    from embed_studio.train.job import make_train_job

    config = _config_from_args(args)
    if args.save_preset:
        from embed_studio.train.presets import save_preset

        config.validate()
        print(f"saved preset {args.save_preset!r}: {save_preset(_presets_dir(args), args.save_preset, config)}")
        return 0
    provider = StandaloneProvider(config.target_path.parent, device=config.device or None)
    job = make_train_job(config, provider, log=lambda message: print(message, file=sys.stderr))
    tty = sys.stderr.isatty()

    def show(status: typing.Any) -> None:
        line = status_line(status)
        print(f"\r{line}\033[K" if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    job.add_listener(show)
    with _stop_signals_cancel(job) as stopped_by:
        job.start()
        while not job.wait(0.5):
            pass
    if tty:
        print(file=sys.stderr)
    if isinstance(job.exception, Cancelled):
        print(f"cancelled; state saved in {config.target_path}", file=sys.stderr)
        return 128 + (stopped_by[0] if stopped_by else signal.SIGINT)
    if job.exception is not None:
        raise job.exception
    result = job.result
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{result.target}: step {result.step} (from {result.initial_step}); logs in {result.log_dir}")
    return 0


@contextlib.contextmanager
def _stop_signals_cancel(job: typing.Any) -> Iterator[list[int]]:
    """Ctrl-C and SIGTERM cancel the job, which saves the current state; later ones wait for that save.

    Without this SIGTERM killed the process without a save, and a second Ctrl-C while saving left the
    interpreter with the trainer thread still running (abort, exit 134). Yields the signals received.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def stop(signum: int, frame: typing.Any) -> None:
        if not received:
            print("\ninterrupting: saving the current state…", file=sys.stderr, flush=True)
            job.cancel()
        else:
            print("\nstill saving the current state; it ends once the file is written", file=sys.stderr, flush=True)
        received.append(signum)

    stop_signals = [signal.SIGINT, signal.SIGTERM]
    previous = {sig: signal.signal(sig, stop) for sig in stop_signals}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
