"""`embed-studio train embedding|hypernetwork`: run the trainer headless with a live progress line."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing

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
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name in _POSITIONAL:
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
    parser.set_defaults(func=_train)


def _config_from_args(args: argparse.Namespace) -> typing.Any:
    from embed_studio.train.config import TrainConfig
    from embed_studio.train.create import default_target

    base: dict = {}
    if args.config:
        base = TrainConfig.load_json(args.config).to_dict()
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
    if "width" not in base and "height" not in base:
        from embed_studio.backends.standalone import default_size_for

        base["width"] = base["height"] = default_size_for(args.model)  # SDXL buckets at a 1024x1024 area
    return TrainConfig.from_dict(base)


def _train(args: argparse.Namespace) -> int:
    from embed_studio.backends.provider import CHECKPOINT_VAE, StandaloneProvider
    from embed_studio.errors import Cancelled
    from embed_studio.progress import status_line
    from embed_studio.train.job import make_train_job

    config = _config_from_args(args)
    provider = StandaloneProvider(config.target_path.parent, device=config.device or None)
    job = make_train_job(
        config, provider, config.vae or CHECKPOINT_VAE, log=lambda message: print(message, file=sys.stderr)
    )
    tty = sys.stderr.isatty()

    def show(status: typing.Any) -> None:
        line = status_line(status)
        print(f"\r{line}\033[K" if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    job.add_listener(show)
    job.start()
    try:
        while not job.wait(0.5):
            pass
    except KeyboardInterrupt:
        print("\ninterrupting: saving the current state…", file=sys.stderr)
        job.cancel()
        job.wait()
    if tty:
        print(file=sys.stderr)
    if isinstance(job.exception, Cancelled):
        print(f"cancelled; state saved in {config.target_path}", file=sys.stderr)
        return 130
    if job.exception is not None:
        raise job.exception
    result = job.result
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{result.target}: step {result.step} (from {result.initial_step}); logs in {result.log_dir}")
    return 0
