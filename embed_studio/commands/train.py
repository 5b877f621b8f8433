"""`embed-studio train embedding|hypernetwork`: run the trainer headless with a live progress line."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing

from embed_studio.backends.samplers import SAMPLER_HELP, SAMPLERS

# Short spellings for the most used settings; every other TrainConfig field is --field-name.
_ALIASES = {
    "max_steps": ["--steps"],
    "grad_accum": ["--gradient-accumulation"],
}
_POSITIONAL = {"kind", "model", "dataset", "target", "name", "extra"}
_NOT_ON_THE_COMMAND_LINE: set[str] = set()

# What each option does and takes; the default is added from TrainConfig. A TrainConfig field without a line
# here fails tests/test_cli_help.py, so no option reaches --help unexplained.
HELP = {
    "vae": "SDXL: a diffusers VAE folder to encode and draw with, e.g. the fp16-fixed SDXL VAE (then it may run in half "
    "precision); default: the checkpoint's own VAE, which encodes in fp32. SD 1.x/2.x train with their own",
    "log_dir": "folder for copies, previews, the loss log and the run's config.json (default: textual_inversion/NAME)",
    "lr": "learning rate: one rate ('0.005') or rate:until-step pairs ('0.0005:5000, 0.0001:10000'); training stops "
    "where the schedule ends unless it ends with a bare rate (default: the guides' per kind)",
    "lr_scheduler": "steps: follow --lr; cosine: anneal from --lr's first rate (the --cosine-* options)",
    "cosine_min_lr": "cosine: the lowest rate, a number >= 0",
    "cosine_cycle_steps": "cosine: steps per cycle, a whole number; 0 = one cycle over --max-steps",
    "cosine_warmup_steps": "cosine: warmup steps at the start of each cycle, a whole number >= 0",
    "cosine_cycle_mult": "cosine: each cycle is this many times longer than the one before (1 = equal)",
    "cosine_gamma": "cosine: each restart's peak rate is this times the one before (1 = equal)",
    "batch_size": "images per batch, a whole number >= 1 (the guide: 1)",
    "grad_accum": "batches per optimizer step, a whole number >= 1: a step sees batch size x this many images "
    "(the guide's 5; the WebUI's own default is 1)",
    "max_steps": "optimizer steps to train to, counted from the file's first step (the guide: 5000)",
    "repeats": "times each image appears per epoch, a whole number >= 1",
    "clip_grad_mode": "gradient clipping: none, or by value / by norm with --clip-grad-value",
    "clip_grad_value": "the clipping limit: a number or a schedule in --lr's syntax",
    "clip_grad_norm_type": "the p of the p-norm when clipping by norm, a number > 0 (2 = Euclidean)",
    "seed": "random seed, a whole number: the same seed and settings give the same run, also when resumed",
    "precision": "compute precision; auto = bf16 on a GPU that has it (else fp16), fp32 on the CPU",
    "half_weights": "keep the frozen model weights in the compute precision (saves memory; off: fp32 under autocast)",
    "gradient_checkpointing": "trade speed for memory in the U-Net; SDXL models: on unless --no-gradient-checkpointing",
    "device": "torch device such as cuda, cuda:1 or cpu (default: CUDA when available)",
    "template": "prompt template: a name from the built-in list (filewords_name, subject, style...) or a .txt path; "
    "each line is a prompt with [name] and [filewords]",
    "templates_dir": "an extra folder whose .txt files can be named by --template",
    "caption_regex": "for images without a .txt caption: a regular expression picking the words of the file name",
    "caption_join": "the text that joins the words --caption-regex picked",
    "shuffle_tags": "shuffle the caption's comma-separated tags at every step (the guide: on)",
    "keep_first_tags": "with shuffling, this many leading tags stay in place, a whole number >= 0",
    "tag_dropout": "chance of leaving out each tag at each step, a number from 0 to below 1 (e.g. 0.1)",
    "latent_sampling": "once: one latent per image; deterministic: its mean (the guide); random: a new sample each "
    "step",
    "width": "training area width in pixels, a multiple of --bucket-step",
    "height": "training area height in pixels, a multiple of --bucket-step",
    "variable_size": "aspect buckets: each image keeps its shape at about width x height pixels (off: a square crop)",
    "bucket_step": "bucket sides are multiples of this many pixels (a multiple of 8)",
    "clip_skip": "CLIP skip to train with, a whole number >= 1: the one you prompt with, never changed for a file",
    "save_every": "save a numbered copy every N steps (0: off)",
    "preview_every": "draw preview images every N steps (0: off)",
    "preview_prompt": "the previews' prompt (default: the last training prompt)",
    "preview_negative_prompt": "the previews' negative prompt",
    "preview_steps": "sampling steps of each preview, a whole number >= 1",
    "preview_cfg_scale": "CFG scale of the previews, a number",
    "preview_seed": "seed of the previews; -1 = a new seed each time",
    "preview_sampler": "sampler of the previews, a diffusers scheduler: " + ", ".join(SAMPLERS) + f" ({SAMPLER_HELP})",
    "preview_scheduler": "schedule type of the previews as txt2img names it; standalone: Automatic or Karras "
    "(dpmpp_2m with Karras draws dpmpp_2m_karras)",
    "preview_width": "preview width in pixels, a multiple of 8 (0: the training width)",
    "preview_height": "preview height in pixels, a multiple of 8 (0: the training height)",
    "preview_with_embedding": "embeddings: also save a PNG that carries the embedding, like the WebUI",
    "use_alpha_weight": "use each PNG's alpha channel as the loss weight (the WebUI's option)",
    "escape_filewords": "escape brackets in [filewords] so 'tag_(series)' stays literal text, not emphasis",
    "adam_beta1": "AdamW beta1, a number from 0 to below 1",
    "adam_beta2": "AdamW beta2, a number from 0 to below 1",
    "adam_eps": "AdamW epsilon, a number > 0",
    "weight_decay": "AdamW weight decay, a number >= 0; -1 = the WebUI's (0 for embeddings, 0.01 for hypernetworks)",
}


def _choices() -> dict[str, list[str]]:
    from embed_studio.backends.base import PRECISIONS
    from embed_studio.train.config import CLIP_GRAD_MODES, LATENT_SAMPLING, LR_SCHEDULERS

    return {
        "lr_scheduler": list(LR_SCHEDULERS),
        "clip_grad_mode": list(CLIP_GRAD_MODES),
        "precision": ["auto", *PRECISIONS],
        "latent_sampling": list(LATENT_SAMPLING),
    }


def _default_text(value: typing.Any) -> str:
    if isinstance(value, bool):
        return "default: " + ("on" if value else "off")
    if value == "":
        return ""
    return f"default: {value}"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train an embedding or hypernetwork",
        description="Train an embedding or hypernetwork file made with `embed-studio create`. Training the same "
        "file again resumes it at its step with its optimizer state; Ctrl-C saves the current state.",
    )  # fmt: skip
    parser.add_argument("kind", choices=["embedding", "hypernetwork"], help="what the file to train is")
    parser.add_argument(
        "--model",
        help="diffusers folder, a .safetensors/.ckpt SD 1.x/2.x checkpoint with its .yaml beside it, or an SDXL "
        ".safetensors (Pony, Illustrious, NoobAI...)",
    )
    parser.add_argument("--dataset", required=True, help="folder of images with .txt captions")
    parser.add_argument("--name", required=True, help="name of the embedding/hypernetwork (its file NAME.pt)")
    parser.add_argument("--file", help="the file to train (default: DIR/NAME.pt, DIR from --dir)")
    parser.add_argument("--dir", help="folder of the file (default ./embeddings or ./hypernetworks)")
    parser.add_argument(
        "--dry-run", action="store_true",
        help="print the prompts each image gets with these settings, then stop (no model needed)",
    )  # fmt: skip
    add_config_options(parser)
    parser.set_defaults(func=_train)


def add_config_options(parser: argparse.ArgumentParser, save_preset: bool = True) -> None:
    """--config, the presets and a flag for every TrainConfig field a run takes from the command line; `train` and
    `sweep` share them, so no option is spelled twice."""
    parser.add_argument("--config", help="JSON settings (a saved config.json); command-line options override it")
    presets = parser.add_argument_group("presets", "named training settings (not the model, data or file)")
    presets.add_argument("--preset", help="start from the saved preset NAME (after --config; options override it)")
    if save_preset:
        presets.add_argument(
            "--save-preset", metavar="NAME", help="save the resulting settings as preset NAME and exit without training"
        )
    presets.add_argument(
        "--presets-dir", help="folder of presets (default: _presets in the log root, ./textual_inversion/_presets)"
    )
    from embed_studio.train.config import TrainConfig
    from embed_studio.train.option_help import BEYOND

    hints = typing.get_type_hints(TrainConfig)
    choices = _choices()
    for f in dataclasses.fields(TrainConfig):
        if f.name in _POSITIONAL or f.name in _NOT_ON_THE_COMMAND_LINE or f.name in BEYOND:
            continue
        flags = [f"--{f.name.replace('_', '-')}", *_ALIASES.get(f.name, [])]
        default = f.default if f.default is not dataclasses.MISSING else None
        kind = hints[f.name]
        text = HELP.get(f.name, "")
        if kind is bool:
            # BooleanOptionalAction appends its own "(default: ...)"; None keeps a --config file's value.
            parser.add_argument(
                *flags, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                help=f"{text} ({_default_text(default)})",
            )  # fmt: skip
            continue
        note = _default_text(default)
        parser.add_argument(
            *flags, dest=f.name, type=kind if kind in (int, float) else str, default=None,
            choices=choices.get(f.name), metavar=_metavar(f.name, kind, choices),
            help=f"{text} ({note})" if note else text,
        )  # fmt: skip
    _add_beyond_options(parser, hints)


def _metavar(name: str, kind: typing.Any, choices: dict[str, list[str]]) -> str | None:
    if name in choices:
        return "{" + ",".join(choices[name]) + "}"
    return {int: "N", float: "X"}.get(kind, "TEXT")


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
        dataset=args.dataset,
        name=args.name,
        target=args.file or str(default_target(folder, args.name)),
    )
    if args.model or "model" not in base:
        base["model"] = args.model or ""
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if f.name not in _POSITIONAL and value is not None:
            base[f.name] = value
    if base.get("model"):
        from pathlib import Path

        from embed_studio.backends.provider import StandaloneProvider, apply_new_run_defaults

        apply_new_run_defaults(base, StandaloneProvider(Path(".")), base["model"])  # SDXL: 1024 area, checkpointing
    return TrainConfig.from_dict(base)


def _presets_dir(args: argparse.Namespace) -> typing.Any:
    from pathlib import Path

    from embed_studio.train.presets import presets_folder

    if args.presets_dir:
        return Path(args.presets_dir).expanduser()
    return presets_folder(Path(args.log_dir).expanduser().parent if args.log_dir else Path("textual_inversion"))


def _train(args: argparse.Namespace) -> int:
    from embed_studio.backends.provider import CHECKPOINT_VAE, StandaloneProvider
    from embed_studio.commands.progress_display import ProgressDisplay, cancelled_exit_code, run_job
    from embed_studio.errors import Cancelled
    from embed_studio.train.job import make_train_job

    config = _config_from_args(args)
    if args.dry_run:
        return _dry_run(config)
    if args.save_preset:
        from embed_studio.train.presets import save_preset

        config.validate()
        print(f"saved preset {args.save_preset!r}: {save_preset(_presets_dir(args), args.save_preset, config)}")
        return 0
    provider = StandaloneProvider(config.target_path.parent, device=config.device or None)
    display = ProgressDisplay()
    job = make_train_job(config, provider, config.vae or CHECKPOINT_VAE, log=display.message)
    stopped_by = run_job(
        job, display, "interrupting: saving the current state…",
        "still saving the current state; it ends once the file is written",
    )  # fmt: skip
    if isinstance(job.exception, Cancelled):
        print(f"cancelled; state saved in {config.target_path}", file=sys.stderr)
        return cancelled_exit_code(stopped_by)
    if job.exception is not None:
        raise job.exception
    result = job.result
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{result.target}: step {result.step} (from {result.initial_step}); logs in {result.log_dir}")
    return 0


DRY_RUN_LINES = 3  # template lines shown per image; the rest are counted


def _dry_run(config: typing.Any) -> int:
    """Each image's caption and the prompts the trainer builds from it, as at the first step."""
    import random

    from embed_studio.dataset.folder import list_images
    from embed_studio.errors import DatasetError
    from embed_studio.train.prompts import PromptOptions, build_prompt, image_caption, load_template_lines

    lines = load_template_lines(config.template, config.templates_dir or None, require_name=config.kind == "embedding")
    options = PromptOptions(config.shuffle_tags, config.keep_first_tags, config.tag_dropout, config.escape_filewords)
    images = list_images(config.dataset)
    if not images:
        raise DatasetError(f"{config.dataset} has no images. Put .png/.jpg/.webp images (with .txt captions) in it.")
    varies = " (tags shuffled/dropped anew every step)" if options.varies else ""
    print(
        f"template {config.template}: {len(lines)} line(s), one picked at random per image and step{varies}; "
        f"[name] = {config.name}"
    )
    for position, path in enumerate(images):
        caption = image_caption(path, config.caption_regex or None, config.caption_join)
        rng = random.Random(f"{config.seed}:{position}")  # a sample of the shuffle; each step draws anew
        print(f"{path.name}:")
        for line in lines[:DRY_RUN_LINES]:
            print(f"  {build_prompt(line, caption, config.name, options, rng)}")
        if len(lines) > DRY_RUN_LINES:
            print(f"  … and {len(lines) - DRY_RUN_LINES} more template line(s)")
    return 0
