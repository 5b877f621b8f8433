"""The diffusers + transformers backend: SD 1.x/2.x from a diffusers folder or a single checkpoint file (SDXL, the
same two ways, in standalone_xl)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from embed_studio.backends.base import (
    PRECISIONS,
    HypernetworkLayers,
    LatentDist,
    PreviewRequest,
    PromptTokens,
    SizeCond,
)
from embed_studio.backends.samplers import AUTOMATIC, NOT_FOR_SD, SAMPLERS, sampler_installed, standalone_sampler
from embed_studio.errors import FileFormatError, UserInputError

CHUNK_TOKENS = 75  # tokens per 77-token CLIP window, between the start and end tokens (the WebUI's chunking)
COMMA_BACKTRACK = 20  # the WebUI's default "comma padding backtrack"
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# torch.compile's backend for the compile_unet option. "inductor" generates fused kernels (the speed-up); a test
# on a small CPU may set "aot_eager", the same graph capture and autograd split without code generation.
COMPILE_BACKEND = "inductor"
_BREAK = re.compile(r"\s*\bBREAK\b\s*")
_BREAK_MARK = -1  # stands for BREAK among the token items (real token ids are >= 0)
WORD_CACHE_SIZE = 65536  # whitespace-separated words whose token ids are kept (a booru dataset has a few thousand)
# Text the word cache may split: printable ASCII and plain whitespace, no "&". CLIP's tokenizers never let a token
# cross whitespace, but ftfy (the WebUI's slow tokenizer) decides HTML unescaping and mojibake repair from the whole
# text, so anything else is tokenized whole, as before.
_WORD_SPLITTABLE = re.compile(r"[\t\n\r -%'-~]*")


def available_samplers(scheduler_config: dict | None = None) -> list[str]:
    """The preview samplers (names of SAMPLERS) for a model whose scheduler config this is (None: SD's default):
    the schedulers diffusers lists as compatible with it (`compatibles`) that this diffusers has, whose packages
    are installed, less the EDM ones that need an EDM-trained model."""
    import diffusers

    with quiet_model_libraries():
        compatible = {c.__name__ for c in diffusers.DDPMScheduler.from_config(scheduler_config or {}).compatibles}
    compatible -= NOT_FOR_SD
    return [
        name
        for name, sampler in SAMPLERS.items()
        if sampler.scheduler in compatible and hasattr(diffusers, sampler.scheduler) and sampler_installed(name)
    ]


_ATTENTION = re.compile(r"\\[()\[\]\\]|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|\]|[^\\()\[\]:]+|:")


@contextlib.contextmanager
def quiet_model_libraries() -> Any:
    """transformers/diffusers advice on every load and cast (accelerate missing, modules kept in fp32, weight
    loading bars) would bury the run's own lines; their errors still show. Restored on exit. The CLI's --verbose
    (EMBED_STUDIO_VERBOSE=1, commands/progress_display.py) leaves them as they are."""
    if os.environ.get("EMBED_STUDIO_VERBOSE") == "1":
        yield
        return
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    libraries = (diffusers_logging, transformers_logging)
    saved = [(lib.get_verbosity(), lib.is_progress_bar_enabled()) for lib in libraries]
    for lib in libraries:
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib, (verbosity, bars) in zip(libraries, saved, strict=True):
            lib.set_verbosity(verbosity)
            if bars:
                lib.enable_progress_bar()


def parse_emphasis(text: str) -> list[tuple[str, float]]:
    """The WebUI's prompt emphasis: (x) = x1.1, [x] = /1.1, (x:1.5) = x1.5, \\( a literal bracket.

    Returns (text, weight) pieces with neighbours of equal weight merged.
    """
    pieces: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    for match in _ATTENTION.finditer(text):
        token, number = match.group(0), match.group(1)
        if token.startswith("\\") and len(token) == 2:
            pieces.append([token[1], 1.0])
        elif token == "(":
            round_open.append(len(pieces))
        elif token == "[":
            square_open.append(len(pieces))
        elif number is not None and round_open:
            scale(round_open.pop(), float(number))
        elif token == ")" and round_open:
            scale(round_open.pop(), 1.1)
        elif token == "]" and square_open:
            scale(square_open.pop(), 1 / 1.1)
        else:
            pieces.append([token, 1.0])
    for start in round_open:  # unclosed brackets still count, as in the WebUI
        scale(start, 1.1)
    for start in square_open:
        scale(start, 1 / 1.1)
    merged: list[tuple[str, float]] = []
    for piece_text, weight in pieces:
        if merged and merged[-1][1] == weight:
            merged[-1] = (merged[-1][0] + piece_text, weight)
        else:
            merged.append((piece_text, weight))
    return merged or [("", 1.0)]


# model_index.json class names of the pipelines this backend trains on; any other pipeline is refused by name.
SD_PIPELINES = ("StableDiffusionPipeline",)
SDXL_PIPELINES = ("StableDiffusionXLPipeline",)
SDXL_STATE_PREFIX = "conditioner.embedders."  # the sgm layout of SDXL single-file checkpoints


def folder_pipeline(path: Path) -> str | None:
    """The pipeline class a diffusers folder declares (model_index.json), or None when it declares none."""
    import json

    index = path / "model_index.json"
    if not index.is_file():
        return "StableDiffusionXLPipeline" if (path / "text_encoder_2").is_dir() else None
    try:
        name = json.loads(index.read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError, AttributeError) as e:
        raise FileFormatError(f"{index}: not a readable model_index.json ({e}).") from e
    return name if isinstance(name, str) else None


def unsupported_model(what: str, pipeline: str) -> FileFormatError:
    return FileFormatError(
        f"{what} is a {pipeline} model; the standalone trainer handles Stable Diffusion 1.x, 2.x and SDXL only. "
        "Give an SD 1.x/2.x/SDXL diffusers folder or checkpoint."
    )


def default_size_for(model: str | os.PathLike) -> int:
    """The training area's side a new run uses on this model without loading it: 1024 for SDXL, else 512."""
    path = Path(model).expanduser()
    try:
        sdxl = folder_pipeline(path) in SDXL_PIPELINES if path.is_dir() else _single_file_is_sdxl(path)
    except FileFormatError:
        sdxl = False  # loading it will say what is wrong
    return 1024 if sdxl else 512


def _single_file_is_sdxl(path: Path) -> bool:
    """Whether a checkpoint file is in SDXL's sgm layout (read from the key names only): the one test of SD 1.x/2.x
    against SDXL for single files, used for loading and for a new run's defaults."""
    if path.suffix.lower() != ".safetensors":
        try:
            return any(k.startswith(SDXL_STATE_PREFIX) for k in pickled_state(path))
        except FileFormatError:
            return False  # unreadable: the loader below says so in its own words
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return any(k.startswith(SDXL_STATE_PREFIX) for k in f.keys())
    except Exception:
        return False  # unreadable: the loader below says so in its own words


def pickled_state(path: Path) -> dict[str, torch.Tensor]:
    """A .ckpt checkpoint's tensors by name (its "state_dict" when it wraps one), through the weights-only loader
    and memory-mapped: telling SDXL from SD 1.x/2.x by the names reads the pickle, not gigabytes of weights."""
    from embed_studio.formats.torchfile import load_pt

    if not path.is_file():
        raise FileFormatError(f"{path}: file not found.")
    obj = load_pt(path, mmap=True)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    state = (
        {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if isinstance(obj, dict)
        else {}
    )
    if not state:
        raise FileFormatError(f"{path.name} holds no model weights (no state dict of tensors).")
    return state


def _short_hash(path: Path) -> str | None:
    """The WebUI's short checkpoint hash (first 10 hex of the file's sha256) for a single file."""
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:10]


def _parts_from_ldm_yaml(path: Path, yaml_path: Path) -> tuple:
    """UNet, VAE, CLIP text encoder, tokenizer and noise schedule of an SD1 checkpoint, from its LDM .yaml alone.

    The text encoder's config and tokenizer come from the folder the yaml's cond_stage_config names (or the
    Hugging Face cache when it names a hub id)."""
    import yaml
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import load_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    try:
        config = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
        params = config["model"]["params"]
        unet = UNet2DConditionModel.from_single_file(str(path), original_config=str(yaml_path))
        vae = AutoencoderKL.from_single_file(str(path), original_config=str(yaml_path))
        version = params["cond_stage_config"].get("params", {}).get("version", "openai/clip-vit-large-patch14")
        text_config = CLIPTextConfig.from_pretrained(version)
        tokenizer = CLIPTokenizer.from_pretrained(version)
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
            state = state.get("state_dict", state)
    except Exception as e:
        raise FileFormatError(
            f"Could not load {path.name} with {yaml_path.name}: {e}. Convert the checkpoint to a diffusers folder "
            "and pass that folder instead."
        ) from e
    prefix = "cond_stage_model.transformer."
    text_state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not text_state:
        raise FileFormatError(
            f"{path.name} has no SD1 CLIP text encoder (cond_stage_model.transformer.*); an SD2 checkpoint needs "
            "network access once, or convert it to a diffusers folder."
        )
    text_encoder = CLIPTextModel(text_config)
    if not hasattr(text_encoder, "text_model"):  # transformers 5 dropped the text_model level
        text_state = {k.removeprefix("text_model."): v for k, v in text_state.items()}
    text_state = {k: v for k, v in text_state.items() if not k.endswith("position_ids")}
    missing, unexpected = text_encoder.load_state_dict(text_state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise FileFormatError(
            f"{path.name}: the text encoder weights do not match its config ({(missing or unexpected)[:3]})."
        )
    scheduler_config = {
        "num_train_timesteps": int(params.get("timesteps", 1000)),
        "beta_start": float(params.get("linear_start", 0.00085)),
        "beta_end": float(params.get("linear_end", 0.012)),
        "beta_schedule": "scaled_linear",
        "prediction_type": "v_prediction" if params.get("parameterization") == "v" else "epsilon",
        "steps_offset": 1,
        "clip_sample": False,
        "set_alpha_to_one": False,
    }
    return unet, vae, text_encoder, tokenizer, scheduler_config


def restore_mean_factor(original: torch.Tensor, weighted: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """original/weighted, the WebUI's emphasis mean restore, but 1 where the weighted mean is (near) zero.

    A window whose mean vanishes (all padding through a norm with zero bias, say) would otherwise turn
    the whole prompt into NaN or inf: 0/0, or a tiny mean blown up by many orders of magnitude.
    """
    scale = windows.detach().float().abs().mean(dim=(2, 3), keepdim=True)
    usable = weighted.abs() > 1e-6 * scale
    factor = torch.where(usable, original / torch.where(usable, weighted, torch.ones_like(weighted)), 1.0)
    return factor.to(windows.dtype)


def apply_emphasis(z: torch.Tensor, prompts: Sequence[PromptTokens], n_chunks: int) -> torch.Tensor:
    """z [B, n_chunks * 77, dim] scaled by the prompts' emphasis weights, each window's mean restored (WebUI)."""
    if not any(p.emphasis for p in prompts):
        return z
    ones = (1.0,) * (CHUNK_TOKENS + 2)
    rows = [
        [w for chunk in (p.emphasis or (ones,) * len(p.chunks)) + (ones,) * (n_chunks - len(p.chunks)) for w in chunk]
        for p in prompts
    ]
    multipliers = torch.tensor(rows, device=z.device, dtype=z.dtype).reshape(len(prompts), n_chunks, -1, 1)
    # The WebUI scales by the weights, then restores each window's original mean so emphasis does not shift
    # the level. txt2img encodes one prompt at a time, so the mean is per prompt and window, never per batch:
    # a prompt's conditioning must not depend on what else is in its training batch.
    windows = z.reshape(len(prompts), n_chunks, -1, z.shape[-1])
    original_mean = windows.float().mean(dim=(2, 3), keepdim=True)
    windows = windows * multipliers
    windows = windows * restore_mean_factor(original_mean, windows.float().mean(dim=(2, 3), keepdim=True), windows)
    return windows.reshape(z.shape)


def _pad_windows(tokens: PromptTokens, n_chunks: int, empty: tuple[int, ...]) -> PromptTokens:
    extra = n_chunks - len(tokens.chunks)
    emphasis = tokens.emphasis
    if emphasis is not None:
        emphasis = emphasis + ((1.0,) * len(empty),) * extra
    return PromptTokens(tokens.chunks + (empty,) * extra, tokens.slots, emphasis)


class HypernetworkAttnProcessor:
    """Scaled dot-product attention with hypernetwork modules applied to the key/value context (WebUI semantics)."""

    def __init__(self, layers: HypernetworkLayers):
        self.layers = layers

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        residual = hidden_states
        if getattr(attn, "spatial_norm", None) is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        batch, seq, _ = (hidden_states if encoder_hidden_states is None else encoder_hidden_states).shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, seq, batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])
        if getattr(attn, "group_norm", None) is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and getattr(attn, "norm_cross", None):
            context = attn.norm_encoder_hidden_states(context)
        # The WebUI picks the module pair by the context's width, for self- and cross-attention alike.
        pair = self.layers.get(context.shape[-1])
        if pair is not None:
            context_k = pair[0](context.float()).to(context.dtype)
            context_v = pair[1](context.float()).to(context.dtype)
        else:
            context_k = context_v = context
        key, value = attn.to_k(context_k), attn.to_v(context_v)
        head_dim = key.shape[-1] // attn.heads
        query, key, value = (t.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for t in (query, key, value))
        out = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False
        )
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if getattr(attn, "residual_connection", False):
            out = out + residual
        return out / getattr(attn, "rescale_output_factor", 1.0)


class StandaloneBackend:
    """A Stable Diffusion 1.x/2.x model loaded with diffusers, as the trainer's Backend."""

    def __init__(
        self,
        unet: Any,
        vae: Any,
        text_encoder: Any,
        tokenizer: Any,
        scheduler_config: dict,
        device: str | torch.device | None = None,
        checkpoint_name: str | None = None,
        checkpoint_hash: str | None = None,
    ):
        self.unet, self.vae, self.text_encoder, self.tokenizer = unet, vae, text_encoder, tokenizer
        self.scheduler_config = dict(scheduler_config)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.prediction_type = self.scheduler_config.get("prediction_type", "epsilon")
        self.token_dim = int(text_encoder.config.hidden_size)
        self.family = "sd2" if self.token_dim == 1024 else "sd1"
        self.default_size = 512  # the training/preview area a new run defaults to
        self.latent_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.scaling_factor = float(vae.config.scaling_factor)
        self.checkpoint_name = checkpoint_name
        self.checkpoint_hash = checkpoint_hash
        self.context_sizes = self._context_sizes()
        self.precision = "fp32"
        self.compute_dtype = torch.float32
        self.clip_skip = 1
        self._use_autocast = False
        self._comma_id = tokenizer.get_vocab().get(",</w>")
        self._word_ids: dict[str, tuple[int, ...]] = {}
        self._injection: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._original_processors: dict | None = None
        self._acp: torch.Tensor | None = None
        self._denoiser: Any = unet  # the UNet, or its torch.compile wrapper (set_compiled)
        for module in (unet, vae, text_encoder):
            module.requires_grad_(False)
            module.eval()
        self.text_encoder.get_input_embeddings().register_forward_hook(self._inject_vectors)
        # Half precision on a GPU from the start: SDXL in fp32 alone (14 GB) would not fit the 12 GB it trains in.
        self.configure("fp16" if self.device.type == "cuda" else "fp32")

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, model: str | os.PathLike, device: str | torch.device | None = None) -> StandaloneBackend:
        """A diffusers folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/) or a single
        .safetensors/.ckpt checkpoint (an LDM .yaml beside it is used when present); SDXL ones go to standalone_xl."""
        path = Path(model).expanduser()
        if not path.exists():
            raise UserInputError(f"Model {path} does not exist. Give a diffusers folder or a .safetensors/.ckpt file.")
        with quiet_model_libraries():
            if path.is_dir():
                return cls._load_folder(path, device)
            return cls._load_single_file(path, device)

    @classmethod
    def _load_folder(cls, path: Path, device: Any) -> StandaloneBackend:
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        pipeline = folder_pipeline(path)
        if pipeline in SDXL_PIPELINES:
            from embed_studio.backends.standalone_xl import StandaloneXLBackend

            return StandaloneXLBackend.load_folder(path, device)
        if pipeline is not None and pipeline not in SD_PIPELINES:
            raise unsupported_model(str(path), pipeline)
        missing = [
            sub for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler") if not (path / sub).is_dir()
        ]
        if missing:
            raise FileFormatError(
                f"{path} is not a diffusers Stable Diffusion folder: missing {', '.join(missing)}/. "
                "Give the folder that holds model_index.json, or a single .safetensors checkpoint."
            )
        try:
            unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet")
            vae = AutoencoderKL.from_pretrained(path, subfolder="vae")
            text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder")
            tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer")
            scheduler = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
        except (OSError, ValueError) as e:
            raise FileFormatError(f"Could not load the model in {path}: {e}") from e
        return cls(unet, vae, text_encoder, tokenizer, dict(scheduler.config), device, checkpoint_name=path.name)

    @classmethod
    def _load_single_file(cls, path: Path, device: Any) -> StandaloneBackend:
        from diffusers import StableDiffusionPipeline

        if _single_file_is_sdxl(path):
            from embed_studio.backends.standalone_xl import StandaloneXLBackend

            return StandaloneXLBackend.load_single_file(path, device)
        yaml_path = path.with_suffix(".yaml")
        first_error: Exception | None = None
        if yaml_path.is_file():
            # The .yaml the WebUI keeps beside a checkpoint describes it fully: no network needed.
            try:
                parts = _parts_from_ldm_yaml(path, yaml_path)
                return cls(*parts, device, checkpoint_name=path.stem, checkpoint_hash=_short_hash(path))
            except FileFormatError as e:
                first_error = e
        try:
            pipe = StableDiffusionPipeline.from_single_file(
                str(path), safety_checker=None, requires_safety_checker=False
            )
        except Exception as e:  # diffusers raises many types here; all mean "cannot use this file"
            detail = f"{first_error} / {e}" if first_error else str(e)
            raise FileFormatError(
                f"Could not load {path.name} as a Stable Diffusion 1.x/2.x checkpoint: {detail}. Put its LDM .yaml "
                "beside it (same name), or convert it to a diffusers folder and pass that folder."
            ) from e
        return cls(
            pipe.unet,
            pipe.vae,
            pipe.text_encoder,
            pipe.tokenizer,
            dict(pipe.scheduler.config),
            device,
            checkpoint_name=path.stem,
            checkpoint_hash=_short_hash(path),
        )

    def _context_sizes(self) -> tuple[int, ...]:
        sizes = {int(self.unet.config.cross_attention_dim)} | {int(c) for c in self.unet.config.block_out_channels}
        return tuple(sorted(sizes))

    # -- configuration ---------------------------------------------------------------------
    def configure(
        self, precision: str, half_weights: bool = True, clip_skip: int = 1, gradient_checkpointing: bool = False
    ) -> None:
        if precision not in PRECISIONS:
            raise UserInputError(f"Precision {precision!r} is not one of {', '.join(PRECISIONS)}.")
        if precision == "fp16" and self.device.type == "cpu":
            raise UserInputError("fp16 needs a GPU; on the CPU use bf16 or fp32.")
        if clip_skip < 1 or clip_skip >= self.text_encoder.config.num_hidden_layers + 1:
            raise UserInputError(
                f"CLIP skip {clip_skip} must be between 1 and {self.text_encoder.config.num_hidden_layers}."
            )
        self.precision, self.compute_dtype, self.clip_skip = precision, _DTYPES[precision], clip_skip
        # With the weights already in the compute precision autocast has nothing left to cast and only adds
        # per-op dispatch cost (~20% of a host-bound step on an H100); it is kept for fp32 weights.
        self._use_autocast = self.compute_dtype != torch.float32 and not half_weights
        # Frozen weights stored in the compute precision: no per-step casts of the whole model under autocast.
        weight_dtype = self.compute_dtype if half_weights else torch.float32
        # The UNet and the text encoders wait in host memory until a prompt is encoded or a step runs: while latents
        # are cached only the VAE is on the accelerator (SDXL at 1024x1024: ~2.5 GB there instead of ~9).
        waiting_room = torch.device("cpu")
        with quiet_model_libraries():
            for module in self._denoising_parts():
                module.to(waiting_room, dtype=weight_dtype)
            self.vae.to(self.device, dtype=self._vae_dtype(weight_dtype))
        self._placed = self.device == waiting_room
        if gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
            self.unet.train()  # diffusers only checkpoints in training mode; SD's UNet has no dropout to worry about
        elif self.unet.is_gradient_checkpointing:
            self.unet.disable_gradient_checkpointing()
            self.unet.eval()

    def set_compiled(self, on: bool) -> None:
        """Whether training steps run the UNet through torch.compile (previews never do). Shapes are static:
        each bucket shape compiles once, at its first step; the module and its weights stay the same."""
        self._denoiser = torch.compile(self.unet, dynamic=False, backend=COMPILE_BACKEND) if on else self.unet

    def _denoising_parts(self) -> tuple[Any, ...]:
        """The modules a training step needs on the device (all but the VAE)."""
        return (self.unet, self.text_encoder)

    def _place(self) -> None:
        """Bring the UNet and text encoders to the device (once after configure: see there)."""
        if not self._placed:
            with quiet_model_libraries():
                for module in self._denoising_parts():
                    module.to(self.device)
            self._placed = True

    def _vae_dtype(self, weight_dtype: torch.dtype) -> torch.dtype:
        """The VAE's weights' dtype for frozen weights in `weight_dtype` (SDXL keeps its own VAE in fp32)."""
        return weight_dtype

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self._use_autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.compute_dtype)

    def alphas_cumprod(self) -> torch.Tensor:
        if self._acp is None:
            from diffusers import DDPMScheduler

            sched = DDPMScheduler.from_config(self.scheduler_config)
            self._acp = sched.alphas_cumprod.to(self.device, torch.float32)
        return self._acp

    # -- images ----------------------------------------------------------------------------
    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor, exact: bool = False) -> LatentDist:
        first = next(self.vae.parameters())
        old_dtype, old_device = first.dtype, first.device
        dtype = torch.float32 if exact else old_dtype
        moved = (dtype, self.device) != (old_dtype, old_device)
        if moved:
            with quiet_model_libraries():
                self.vae.to(self.device, dtype=dtype)
        try:
            ctx = contextlib.nullcontext() if exact else self.autocast()
            with ctx:
                dist = self.vae.encode(pixels.to(self.device, dtype)).latent_dist
            mean = dist.mean.float() * self.scaling_factor
            std = dist.std.float() * self.scaling_factor
        finally:
            if moved:
                with quiet_model_libraries():
                    self.vae.to(old_device, dtype=old_dtype)
        return LatentDist(mean, std)

    def release_image_encoder(self) -> None:
        if self.device.type != "cpu":
            self.vae.to("cpu")
            torch.cuda.empty_cache()

    # -- prompts ---------------------------------------------------------------------------
    def text_ids(self, text: str) -> list[int]:
        """The token ids of plain `text` (no emphasis, no BREAK), exactly as tokenizing it whole gives them.

        Shuffled tags make every training prompt new, so a cache of whole prompts misses; the tokenizer call costs
        far more than the lookups, so each whitespace-separated word is tokenized once and its ids reused.
        """
        if not _WORD_SPLITTABLE.fullmatch(text):
            return list(self.tokenizer(text, add_special_tokens=False, truncation=False).input_ids)
        ids: list[int] = []
        for word in text.split():
            cached = self._word_ids.get(word)
            if cached is None:
                if len(self._word_ids) >= WORD_CACHE_SIZE:
                    self._word_ids.clear()
                tokens = self.tokenizer(word, add_special_tokens=False, truncation=False).input_ids
                cached = self._word_ids[word] = tuple(tokens)
            ids.extend(cached)
        return ids

    def token_ids(self, text: str) -> list[int]:
        plain = "".join(piece for piece, _ in parse_emphasis(text))
        return list(self.tokenizer(plain, add_special_tokens=False, truncation=False).input_ids)

    def token_vectors(self, text: str) -> torch.Tensor:
        ids = self.token_ids(text)
        weight = self.text_encoder.get_input_embeddings().weight
        return weight[torch.tensor(ids, dtype=torch.long, device=weight.device)].detach().float().cpu()

    def tokenize(self, text: str, trigger: str | None = None, n_vectors: int = 0) -> PromptTokens:
        pattern = None
        if trigger and n_vectors > 0:
            pattern = re.compile(rf"(?<![\w]){re.escape(trigger)}(?![\w])", re.IGNORECASE)
        # (token id or a run of vector slots, weight) in prompt order
        items: list[tuple[int | tuple[int, ...], float]] = []
        for piece, weight in parse_emphasis(text):
            segments = pattern.split(piece) if pattern else [piece]
            for i, segment in enumerate(segments):
                if i:
                    items.append((tuple(range(n_vectors)), weight))
                for j, part in enumerate(_BREAK.split(segment)):
                    if j:
                        items.append((_BREAK_MARK, 1.0))
                    if part.strip():
                        items.extend((t, weight) for t in self.text_ids(part))
        # Split into 75-token windows like the WebUI: a run of vectors is never split, and a window that fills
        # up within COMMA_BACKTRACK tokens after a comma breaks at that comma instead.
        windows: list[list[tuple[int | tuple[int, ...], float]]] = [[]]
        used = 0  # tokens in windows[-1]
        for item, weight in items:
            if item == _BREAK_MARK:  # "BREAK" in a prompt starts a new window, as in the WebUI
                if windows[-1]:
                    windows.append([])
                    used = 0
                continue
            size = len(item) if isinstance(item, tuple) else 1
            current = windows[-1]
            if used + size > CHUNK_TOKENS:
                comma = max((k for k, (i, _) in enumerate(current) if i == self._comma_id), default=-1)
                if comma >= 0 and len(current) - 1 - comma <= COMMA_BACKTRACK:
                    windows[-1], moved = current[: comma + 1], current[comma + 1 :]
                    windows.append(moved)
                    used = sum(len(i) if isinstance(i, tuple) else 1 for i, _ in moved)
                else:
                    windows.append([])
                    used = 0
            windows[-1].append((item, weight))
            used += size
        chunks: list[list[int]] = []
        weights: list[list[float]] = []
        slots: list[tuple[int, int, int]] = []
        for index, window in enumerate(windows):
            chunks.append([])
            weights.append([])
            for item, weight in window:
                if isinstance(item, tuple):
                    for v in item:
                        slots.append((index, len(chunks[-1]) + 1, v))  # +1: after the start token
                        chunks[-1].append(self.tokenizer.pad_token_id)
                        weights[-1].append(weight)
                else:
                    chunks[-1].append(item)
                    weights[-1].append(weight)
        emphasis = None
        if any(w != 1.0 for row in weights for w in row):
            emphasis = tuple(tuple([1.0, *row] + [1.0] * (CHUNK_TOKENS + 1 - len(row))) for row in weights)
        return PromptTokens(tuple(self._window(c) for c in chunks), tuple(slots), emphasis)

    def _window(self, tokens: list[int]) -> tuple[int, ...]:
        pad = [self.tokenizer.pad_token_id] * (CHUNK_TOKENS - len(tokens))
        return (self.tokenizer.bos_token_id, *tokens, *pad, self.tokenizer.eos_token_id)

    def _inject_vectors(self, module: Any, inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
        if self._injection is None:
            return None
        rows, cols, vectors = self._injection
        return output.index_put((rows, cols), vectors.to(output.dtype))

    def encode_prompts(self, prompts: Sequence[PromptTokens], vectors: torch.Tensor | None = None) -> torch.Tensor:
        self._place()
        n_chunks = max(len(p.chunks) for p in prompts)
        input_ids = self._padded_ids(prompts, n_chunks)
        self._slot_injection(prompts, n_chunks, vectors)
        try:
            with self.autocast():
                if self.clip_skip > 1:
                    out = self.text_encoder(input_ids, output_hidden_states=True)
                    text_model = getattr(
                        self.text_encoder, "text_model", self.text_encoder
                    )  # transformers 5 flattened it
                    z = text_model.final_layer_norm(out.hidden_states[-self.clip_skip])
                else:
                    z = self.text_encoder(input_ids).last_hidden_state
        finally:
            self._injection = None
        z = z.reshape(len(prompts), n_chunks * z.shape[1], z.shape[2])
        return apply_emphasis(z, prompts, n_chunks)

    def _slot_injection(self, prompts: Sequence[PromptTokens], n_chunks: int, vectors: torch.Tensor | None) -> None:
        """Where `vectors` go in the batch's token embeddings (rows = prompt windows), for the embedding hook."""
        rows, cols, which = [], [], []
        for b, prompt in enumerate(prompts):
            for chunk, pos, v in prompt.slots:
                rows.append(b * n_chunks + chunk)
                cols.append(pos)
                which.append(v)
        self._injection = None
        if vectors is not None and rows:
            index = torch.tensor(which, device=self.device)
            self._injection = (
                torch.tensor(rows, device=self.device),
                torch.tensor(cols, device=self.device),
                vectors.to(self.device)[index],
            )

    def _padded_ids(self, prompts: Sequence[PromptTokens], n_chunks: int) -> torch.Tensor:
        # Shorter prompts get empty windows so the batch stacks (the WebUI pads the same way).
        empty = self._window([])
        ids = [w for p in prompts for w in p.chunks + (empty,) * (n_chunks - len(p.chunks))]
        return torch.tensor(ids, dtype=torch.long, device=self.device)

    # -- denoiser ----------------------------------------------------------------------------
    def attach_hypernetwork(self, layers: HypernetworkLayers | None) -> None:
        if layers is None:
            if self._original_processors is not None:
                self.unet.set_attn_processor(self._original_processors)
                self._original_processors = None
            return
        if self._original_processors is None:
            self._original_processors = dict(self.unet.attn_processors)
        for pair in layers.values():
            for module in pair:
                module.to(self.device)
        self.unet.set_attn_processor(HypernetworkAttnProcessor(layers))

    def predict(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        cond: torch.Tensor,
        sizes: Sequence[SizeCond] | None = None,
    ) -> torch.Tensor:
        self._place()
        with self.autocast():
            dtype = next(self.unet.parameters()).dtype
            return self._denoiser(noisy_latents.to(dtype), timesteps, encoder_hidden_states=cond.to(dtype)).sample

    # -- previews ----------------------------------------------------------------------------
    def samplers(self) -> list[str]:
        """The preview samplers this model's pipeline takes (see available_samplers)."""
        return available_samplers(self.scheduler_config)

    def _sampler(self, name: str, scheduler: str = AUTOMATIC) -> Any:
        import diffusers

        key = standalone_sampler(name, scheduler)
        offered = self.samplers()
        if key not in offered:
            raise UserInputError(
                f"Preview sampler {name!r} does not fit this model; pick one of: {', '.join(offered)}."
            )
        sampler = SAMPLERS[key]
        return getattr(diffusers, sampler.scheduler).from_config(self.scheduler_config, **sampler.config)

    @torch.no_grad()
    def render_preview(
        self, request: PreviewRequest, trigger: str | None = None, vectors: torch.Tensor | None = None
    ) -> Image.Image:
        with quiet_model_libraries():  # its first import warns about optional image-processor backends
            from diffusers import StableDiffusionPipeline

        pos, neg = self._preview_tokens(request, trigger, vectors)
        with self._drawing():
            prompt_embeds = self.encode_prompts([pos], vectors)
            negative_embeds = self.encode_prompts([neg], vectors)
            pipe = StableDiffusionPipeline(
                vae=self.vae,
                text_encoder=self.text_encoder,
                tokenizer=self.tokenizer,
                unet=self.unet,
                scheduler=self._sampler(request.sampler, request.scheduler),
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
            return self._draw(pipe, request, prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds)

    def _draw(self, pipe: Any, request: PreviewRequest, **embeds: torch.Tensor) -> Image.Image:
        """Run a diffusers pipeline on precomputed prompt embeddings with the request's seed, steps, CFG and size."""
        pipe.set_progress_bar_config(disable=True)
        generator = torch.Generator(device="cpu").manual_seed(int(request.seed))
        dtype = next(self.unet.parameters()).dtype
        with self.autocast():
            return pipe(
                **{name: tensor.to(dtype) for name, tensor in embeds.items()},
                num_inference_steps=request.steps,
                guidance_scale=request.cfg_scale,
                generator=generator,
                height=request.height,
                width=request.width,
                output_type="pil",
            ).images[0]

    def _preview_tokens(
        self, request: PreviewRequest, trigger: str | None, vectors: torch.Tensor | None
    ) -> tuple[PromptTokens, PromptTokens]:
        """The preview's prompt and negative prompt, padded to the same number of 77-token windows."""
        n = 0 if vectors is None else int(vectors.shape[0])
        pos = self.tokenize(request.prompt, trigger, n)
        neg = self.tokenize(request.negative_prompt or "", trigger, n)
        width = max(len(pos.chunks), len(neg.chunks))
        empty = self._window([])
        return _pad_windows(pos, width, empty), _pad_windows(neg, width, empty)

    @contextlib.contextmanager
    def _drawing(self) -> Iterator[None]:
        """The VAE on the device and the UNet in eval mode while a preview is drawn; both put back after."""
        self._place()
        vae_device = next(self.vae.parameters()).device
        self.vae.to(self.device)
        was_training = self.unet.training
        self.unet.eval()
        try:
            yield
        finally:
            self.vae.to(vae_device)
            self.unet.train(was_training)
