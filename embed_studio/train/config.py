"""The training configuration: one dataclass for the CLI, the UI and the API, validated and saved as JSON."""

from __future__ import annotations

import collections.abc
import dataclasses
import json
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embed_studio.backends.base import PRECISIONS
from embed_studio.backends.samplers import AUTOMATIC, check_preview_sampler
from embed_studio.dataset.buckets import validate_bucket_settings
from embed_studio.errors import UserInputError
from embed_studio.fileio import atomic_write_text
from embed_studio.train.prompts import DEFAULT_TEMPLATE
from embed_studio.train.schedule import CosineSchedule, StepSchedule, parse_step_schedule

KINDS = ("embedding", "hypernetwork")
LATENT_SAMPLING = ("once", "deterministic", "random")
CLIP_GRAD_MODES = ("none", "value", "norm")
LR_SCHEDULERS = ("steps", "cosine")
ON_VALIDATION_RISE = ("none", "lower_lr", "rollback")

# The guides' recommendations: embeddings "0.0005:5000, 0.0001:10000"; hypernetworks need far lower rates.
DEFAULT_EMBEDDING_LR = "0.0005:5000, 0.0001:10000"
DEFAULT_HYPERNETWORK_LR = "0.000005:1000, 0.0000025:10000, 0.00000075:20000, 0.0000005:30000, 0.00000025"


@dataclass
class TrainConfig:
    kind: str  # "embedding" or "hypernetwork"
    model: str  # diffusers folder or single-file checkpoint (the standalone backend)
    dataset: str  # folder of images with .txt caption sidecars
    target: str  # the .pt file being trained (created beforehand with `create`); resumed from its step
    log_dir: str = ""  # copies, previews, loss log and this config; default: textual_inversion/<name>
    name: str = ""  # the [name] in prompts; default: the target's file name
    lr: str = ""  # WebUI syntax; default per kind (see DEFAULT_*_LR)
    lr_scheduler: str = "steps"  # "steps" (the lr string) or "cosine" (annealing from the lr string's first rate)
    cosine_min_lr: float = 0.0
    cosine_cycle_steps: int = 0  # 0 = one cycle over max_steps
    cosine_warmup_steps: int = 0
    cosine_cycle_mult: float = 1.0
    cosine_gamma: float = 1.0  # peak multiplier per restart
    batch_size: int = 1
    grad_accum: int = 5
    max_steps: int = 5000
    repeats: int = 1  # times each image appears per epoch
    clip_grad_mode: str = "none"
    clip_grad_value: str = "0.1"  # WebUI schedule syntax, like the lr
    clip_grad_norm_type: float = 2.0  # the p of the p-norm for clipping by norm (MonkeyPatch's option)
    seed: int = 0
    precision: str = "auto"  # auto: backends.base.auto_precision (bf16/fp16 on CUDA, fp32 on CPU)
    half_weights: bool = True  # frozen weights stored in the compute precision (False: fp32 under autocast)
    gradient_checkpointing: bool = False
    device: str = ""  # "" = CUDA when available
    template: str = DEFAULT_TEMPLATE
    templates_dir: str = ""  # extra folder of templates (e.g. the WebUI's textual_inversion_templates)
    caption_regex: str = ""  # for images without a sidecar: words of the file name
    caption_join: str = " "
    shuffle_tags: bool = True
    keep_first_tags: int = 0
    tag_dropout: float = 0.0
    latent_sampling: str = "deterministic"
    width: int = 512  # training area (width x height); with variable_size each image gets a bucket of that area
    height: int = 512
    variable_size: bool = True
    bucket_step: int = 64
    clip_skip: int = 1
    save_every: int = 250
    preview_every: int = 250
    preview_prompt: str = ""  # empty: the last training prompt
    preview_negative_prompt: str = ""
    preview_steps: int = 20
    preview_cfg_scale: float = 7.0
    preview_seed: int = 1
    preview_sampler: str = "euler_a"
    preview_scheduler: str = AUTOMATIC  # the WebUI's schedule type; standalone: Automatic or Karras
    preview_width: int = 0  # 0 = the training width/height
    preview_height: int = 0
    preview_with_embedding: bool = True  # embeddings: also a PNG carrying the embedding, like the WebUI's
    use_alpha_weight: bool = False  # the WebUI's "use PNG alpha channel as loss weight"
    vae: str = ""  # WebUI: "" = the checkpoint's own VAE (the guides' "VAE left on fries it"), or a VAE by name
    escape_filewords: bool = True  # "tag_(series)" stays literal in [filewords] instead of becoming emphasis
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    weight_decay: float = -1.0  # -1 = the WebUI's choice: 0 for embeddings, AdamW's 0.01 for hypernetworks
    # -- beyond the WebUI's trainer (kohya/OneTrainer/Train_Gamma options); every default leaves a run as before --
    caption_dropout: float = 0.0  # chance a prompt's [filewords] is empty (the whole caption dropped)
    token_warmup_min: int = 1  # kohya: tags used at step 0 (after the kept ones) while token warmup runs
    token_warmup_step: int = 0  # kohya: steps over which the tags grow to the whole caption; 0 = off
    flip_augment: bool = False  # each image also mirrored (encoded once), picked at random per step
    color_jitter: float = 0.0  # brightness/contrast/saturation jitter strength; > 0 re-encodes images every step
    loss_mask_dir: str = (
        ""  # folder of masks named like the images (white = learn, black = ignore); relative = in the dataset
    )
    noise_offset: float = 0.0  # kohya's noise offset (about 0.05-0.1 for darker/brighter images)
    min_snr_gamma: float = 0.0  # min-SNR loss weighting (5 is the paper's); 0 = off
    debiased_loss: bool = False  # weight each timestep by 1/sqrt(SNR) (debiased estimation)
    v_pred_like_eps_loss: bool = False  # v-prediction models: scale the loss by SNR/(SNR+1) like an epsilon model's
    min_timestep: int = 0  # train only timesteps in [min_timestep, max_timestep)
    max_timestep: int = 1000
    optimizer: str = "adamw"  # adamw, or lion/prodigy/dadapt_adam when their package is installed
    save_safetensors: bool = False  # embeddings: also a .safetensors beside every saved copy and the final file
    save_each_cycle: bool = False  # cosine with restarts: save a copy and previews at the end of every cycle
    tensorboard: bool = False  # also write TensorBoard scalars to LOGDIR/tensorboard (needs the tensorboard package)
    preview_prompts: str = ""  # more preview prompts, one a line (WebUI --prompt/--seed/... options allowed): a grid
    validation_split: float = 0.0  # share of the images held back for validation (0 = none)
    validation_dir: str = ""  # or a folder of validation images (with captions)
    validation_every: int = 100  # steps between validation checks
    validation_patience: int = 0  # act when the validation loss rose this many checks in a row; 0 = never
    on_validation_rise: str = "none"  # none, lower_lr (times validation_lr_factor) or rollback to the best copy
    validation_lr_factor: float = 0.5
    preview_score: bool = False  # tag each preview (train.scoring) and log how many character tags it shows
    score_tagger: str = ""  # the tagger for that: a registry name or a folder with model.onnx; "" = none
    score_tags: str = ""  # the character tags to look for, comma-separated; "" = the dataset's suggestions
    score_share: float = 0.5  # suggestions: tags on at least this share of the images (the Dataset panel's)
    score_models_dir: str = ""  # where registry taggers are cached; "" = the host's (the Tagger panel's)
    compile_unet: bool = False  # standalone backend: torch.compile the U-Net for the bucket shapes
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.lr:
            self.lr = DEFAULT_HYPERNETWORK_LR if self.kind == "hypernetwork" else DEFAULT_EMBEDDING_LR
        if not self.name and self.target:
            self.name = Path(self.target).stem

    # -- derived ---------------------------------------------------------------------------
    @property
    def target_path(self) -> Path:
        return Path(self.target).expanduser()

    @property
    def log_path(self) -> Path:
        # Like the WebUI's default log directory, and outside the embeddings folder: the WebUI loads every .pt
        # under that folder, so numbered copies inside it would show up as embeddings.
        return Path(self.log_dir).expanduser() if self.log_dir else Path("textual_inversion") / self.name

    def lr_schedule(self) -> StepSchedule | CosineSchedule:
        steps = parse_step_schedule(self.lr, "Learning rate")
        if self.lr_scheduler == "steps":
            return steps
        return CosineSchedule(
            max_lr=steps.first_rate,
            min_lr=self.cosine_min_lr,
            cycle_steps=self.cosine_cycle_steps or self.max_steps,
            warmup_steps=self.cosine_warmup_steps,
            cycle_mult=self.cosine_cycle_mult,
            gamma=self.cosine_gamma,
        )

    def clip_schedule(self) -> StepSchedule | None:
        if self.clip_grad_mode == "none":
            return None
        return parse_step_schedule(self.clip_grad_value, "Gradient clipping value")

    # -- checks ----------------------------------------------------------------------------
    def validate(self) -> TrainConfig:
        """Raise UserInputError naming the first bad value; returns self for chaining."""

        def choice(label: str, value: str, options: tuple[str, ...]) -> None:
            if value not in options:
                raise UserInputError(f"{label} {value!r} is not one of: {', '.join(options)}.")

        def positive(label: str, value: int, minimum: int = 1) -> None:
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise UserInputError(f"{label} must be a whole number of at least {minimum} (got {value!r}).")

        require_kind(self.kind)
        choice("Latent sampling", self.latent_sampling, LATENT_SAMPLING)
        choice("Gradient clipping", self.clip_grad_mode, CLIP_GRAD_MODES)
        choice("LR scheduler", self.lr_scheduler, LR_SCHEDULERS)
        check_preview_sampler(self.preview_sampler, self.preview_scheduler)
        if self.precision != "auto":
            choice("Precision", self.precision, PRECISIONS)
        if not self.model:
            raise UserInputError("No model given: pass a diffusers folder or a .safetensors checkpoint.")
        if not self.dataset:
            raise UserInputError("No dataset folder given.")
        if not self.target:
            raise UserInputError("No file to train given: create an embedding or hypernetwork first.")
        if not self.name.strip():
            raise UserInputError("The name used for [name] in prompts is empty.")
        positive("Batch size", self.batch_size)
        positive("Gradient accumulation", self.grad_accum)
        positive("Max steps", self.max_steps)
        positive("Repeats", self.repeats)
        positive("CLIP skip", self.clip_skip)
        positive("Save every", self.save_every, 0)
        positive("Preview every", self.preview_every, 0)
        positive("Preview steps", self.preview_steps)
        positive("Keep first tags", self.keep_first_tags, 0)
        if not 0 <= self.tag_dropout < 1:
            raise UserInputError(f"Tag dropout {self.tag_dropout} must be at least 0 and below 1 (e.g. 0.1).")
        if not (0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1 and self.adam_eps > 0):
            raise UserInputError("AdamW betas must be in [0, 1) and eps positive (defaults 0.9, 0.999, 1e-8).")
        if self.clip_grad_norm_type <= 0:
            raise UserInputError(f"Gradient norm type {self.clip_grad_norm_type} must be positive (2 = Euclidean).")
        validate_bucket_settings(self.width, self.height, self.bucket_step)
        for label, value in (("Preview width", self.preview_width), ("Preview height", self.preview_height)):
            if value and (value < 8 or value % 8):
                raise UserInputError(f"{label} {value} must be a multiple of 8 (or 0 for the training size).")
        if self.caption_regex:
            import re

            try:
                re.compile(self.caption_regex)
            except re.error as e:
                raise UserInputError(f"Filename regex {self.caption_regex!r} is invalid: {e}.") from e
        self.lr_schedule()
        self.clip_schedule()
        self._validate_beyond()
        return self

    def _validate_beyond(self) -> None:
        from embed_studio.train.optimizers import OPTIMIZERS, require_optimizer

        def share(label: str, value: float, top: float, example: str) -> None:
            if not 0 <= value < top:
                raise UserInputError(f"{label} {value} must be at least 0 and below {top:g} (e.g. {example}).")

        share("Caption dropout", self.caption_dropout, 1, "0.05")
        share("Colour jitter", self.color_jitter, 1, "0.1")
        share("Noise offset", self.noise_offset, 1, "0.05")
        share("Validation split", self.validation_split, 1, "0.1")
        if self.token_warmup_step < 0 or self.token_warmup_min < 0:
            raise UserInputError("Token warmup steps and its minimum tag count must be 0 or more.")
        if self.min_snr_gamma < 0:
            raise UserInputError(f"Min-SNR gamma {self.min_snr_gamma} must be 0 (off) or positive (e.g. 5).")
        if not 0 <= self.min_timestep < self.max_timestep:
            raise UserInputError(
                f"Timestep range {self.min_timestep}-{self.max_timestep} is empty: the minimum must be at least 0 "
                "and below the maximum (the full range is 0-1000)."
            )
        if self.validation_every < 1:
            raise UserInputError(f"Validate every {self.validation_every} steps: it must be at least 1.")
        if self.validation_patience < 0:
            raise UserInputError("Validation patience must be 0 (never act) or a number of checks.")
        if not 0 < self.validation_lr_factor < 1:
            raise UserInputError(
                f"The validation LR factor {self.validation_lr_factor} must be between 0 and 1 (e.g. 0.5)."
            )
        if self.on_validation_rise not in ON_VALIDATION_RISE:
            raise UserInputError(
                f"On validation rise {self.on_validation_rise!r} is not one of: {', '.join(ON_VALIDATION_RISE)}."
            )
        if not 0 < self.score_share <= 1:
            raise UserInputError(
                f"Score tag share {self.score_share} must be above 0 and at most 1 (e.g. 0.5: tags on half the images)."
            )
        if self.optimizer not in OPTIMIZERS:
            raise UserInputError(f"Optimizer {self.optimizer!r} is not one of: {', '.join(OPTIMIZERS)}.")
        require_optimizer(self.optimizer)
        if self.tensorboard:
            from embed_studio.train.scalars import require_tensorboard

            require_tensorboard()
        if self.preview_prompts.strip():
            from embed_studio.backends.base import PreviewRequest
            from embed_studio.train.preview_grid import parse_preview_prompts

            parse_preview_prompts(self.preview_prompts, PreviewRequest(prompt=""))

    @property
    def validates(self) -> bool:
        return bool(self.validation_split > 0 or self.validation_dir)

    # -- JSON ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def checked_fields(cls, data: Any) -> dict[str, Any]:
        """`data` (an API body, a JSON file) with every value checked against its field's type, numbers as the
        field's type; UserInputError names the first unknown, missing or mistyped field."""
        if not isinstance(data, dict):
            raise UserInputError(f"Training settings must be a JSON object of setting: value (got {_json_type(data)}).")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise UserInputError(f"Unknown training setting(s): {', '.join(unknown)}.")
        required = [
            name
            for name, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [name for name in required if name not in data]
        if missing:
            raise UserInputError(f"Missing training setting(s): {', '.join(missing)}.")
        hints = typing.get_type_hints(cls)
        return {name: check_type(name, value, hints[name], "Training setting") for name, value in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return cls(**cls.checked_fields(data))

    def save_json(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load_json(cls, path: str | os.PathLike) -> TrainConfig:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UserInputError(f"Cannot read training settings {path}: {e}.") from e
        return cls.from_dict(data)


def require_kind(kind: str) -> str:
    """`kind` if it is one this project trains and creates; UserInputError otherwise."""
    if kind not in KINDS:
        raise UserInputError(f"Kind {kind!r} is not one of: {', '.join(KINDS)}.")
    return kind


def check_type(name: str, value: Any, hint: Any, what: str = "Setting") -> Any:
    """`value` checked against a type hint (bool, int, float, str, dict, lists and unions of them), as that type.

    JSON has no int/float distinction a client can be relied on for: 512.0 is a whole number, 5 a float. Nothing
    else is converted: "no" is not false, "512" not a number. UserInputError names the setting.
    """
    ok, converted = _convert(value, hint)
    if not ok:
        raise UserInputError(f"{what} {name!r} must be {_describe(hint)} (got {_shown(value)}).")
    return converted


def _convert(value: Any, hint: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True, value
    if hint is None or hint is type(None):
        return value is None, value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            ok, converted = _convert(value, option)
            if ok:
                return True, converted
        return False, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        if isinstance(value, float) and math.isfinite(value) and value == int(value):
            return True, int(value)
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return True, float(value)
        return False, value
    if hint is str:
        return isinstance(value, str), value
    if hint is dict or origin is dict:
        return isinstance(value, dict), value
    if origin in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            return False, value
        args = [a for a in typing.get_args(hint) if a is not Ellipsis] or [Any]
        items = [_convert(item, args[0]) for item in value]
        if not all(ok for ok, _ in items):
            return False, value
        return True, (tuple if origin is tuple else list)(converted for _, converted in items)
    raise TypeError(f"check_type does not know the type {hint!r}")  # a programming error, not the user's


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(option) for option in typing.get_args(hint))
    if origin in (list, tuple, collections.abc.Sequence):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis] or [Any]
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "text", dict: "an object"}
    if hint is None or hint is type(None):
        return "null"
    return names.get(hint) or names.get(origin) or "any value"


def _json_type(value: Any) -> str:
    names = {bool: "true/false", int: "a number", float: "a number", str: "text", list: "a list", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, bool, list, dict, type(None))) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
