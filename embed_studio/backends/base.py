"""The Backend protocol: everything the trainer asks of a model, so train/ never touches a model class."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # torch is imported where it is used: `embed-studio --help` reads the constants below
    import torch
    from PIL import Image

PRECISIONS = ("fp32", "fp16", "bf16")
PREDICTION_TYPES = ("epsilon", "v_prediction")
PREVIEW_SAMPLERS = ("euler_a", "euler", "ddim", "dpmpp_2m")
SDXL_HYPERNETWORK_REFUSAL = (
    "Hypernetworks train on SD 1.x/2.x models here; on SDXL train an embedding. (The WebUI does apply "
    "hypernetworks with 2048/640/1280-wide modules to SDXL's attention, but Embed Studio does not train them yet.)"
)


def device_has_bf16(device: torch.device) -> bool:
    """Whether `device` computes in bf16 natively (CUDA compute capability 8.0+ and ROCm's equivalents)."""
    import torch

    if device.type != "cuda":
        return False
    try:  # torch >= 2.3 counts emulated (slow) bf16 unless told not to
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # older torch counts native support only
        return bool(torch.cuda.is_bf16_supported())


def auto_precision(device: torch.device, shared_weights: torch.dtype | None = None, bf16: bool | None = None) -> str:
    """The compute precision "auto" means: the one place that decides.

    fp32 on the CPU and other devices (their half-precision kernels are slow or missing); on CUDA bf16 where the
    device has it (fp32's range: no GradScaler, no read-back for its inf check), else fp16 with a GradScaler. A
    model held in fp16 by someone else (the WebUI's, shared with txt2img and never converted) keeps fp16:
    bf16 autocast over it would cast every weight again at every step. `bf16` overrides the device query."""
    import torch

    if device.type != "cuda":
        return "fp32"
    if shared_weights == torch.float16:
        return "fp16"
    return "bf16" if (device_has_bf16(device) if bf16 is None else bf16) else "fp16"


@dataclass
class LatentDist:
    """Scaled VAE latents of a batch: mean and standard deviation (sample = mean + std * noise)."""

    mean: torch.Tensor
    std: torch.Tensor

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        import torch

        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise


@dataclass(frozen=True)
class PromptTokens:
    """One tokenized prompt, opaque to the trainer: the backend makes it and reads it back.

    `chunks` are token id rows; `slots` are (chunk, position, vector index) places that take the
    trainable vectors instead of a token embedding; `emphasis` holds (x:1.2)-style weights.
    """

    chunks: tuple[tuple[int, ...], ...]
    slots: tuple[tuple[int, int, int], ...] = ()
    emphasis: tuple[tuple[float, ...], ...] | None = None  # per-token weights like chunks; None = all 1.0


@dataclass(frozen=True)
class SizeCond:
    """SDXL's size conditioning for one training image, in pixels: its size before resizing, the crop's top-left
    in the resized image, and the bucket it trains at. (height, width) and (top, left), as SDXL orders them."""

    original: tuple[int, int]
    crop: tuple[int, int]
    target: tuple[int, int]


@dataclass
class PooledCond:
    """Text conditioning of a model that also takes a pooled text vector (SDXL): [B, tokens, ctx] and [B, pooled]."""

    context: torch.Tensor
    pooled: torch.Tensor


# What encode_prompts returns and predict takes back: a [B, tokens, ctx] tensor, or PooledCond for SDXL.
Conditioning = "torch.Tensor | PooledCond"  # quoted: torch is imported only where it is used


@dataclass
class PreviewRequest:
    prompt: str
    negative_prompt: str = ""
    steps: int = 20
    cfg_scale: float = 7.0
    seed: int = 0
    width: int = 512
    height: int = 512
    sampler: str = "euler_a"
    scheduler: str = "Automatic"  # the WebUI's schedule type (Karras, Exponential...); Automatic = the sampler's own


def host_to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small CPU tensor (token ids, indices) on `device`. On CUDA the copy goes through pinned memory and does
    not block: a copy from ordinary memory first waits for all queued work, a full stop every training step."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


# Hypernetwork modules by attention-context width: {width: (key module, value module)}.
HypernetworkLayers = Mapping[int, Sequence["torch.nn.Module"]]


@runtime_checkable
class Backend(Protocol):
    """A loaded diffusion model as the trainer sees it. Implementations: standalone (diffusers), webui."""

    family: str  # "sd1", "sd2" or "sdxl": recorded in outputs
    prediction_type: str  # "epsilon" or "v_prediction"
    device: torch.device
    token_dim: int  # width of one embedding vector
    context_sizes: tuple[int, ...]  # attention context widths (the hypernetwork sizes that apply)
    latent_factor: int  # pixels per latent cell (8 for SD)
    checkpoint_hash: str | None  # short hash of the checkpoint, written into outputs like the WebUI does
    checkpoint_name: str | None

    def configure(
        self, precision: str, half_weights: bool = True, clip_skip: int = 1, gradient_checkpointing: bool = False
    ) -> None:
        """Set compute precision, whether frozen weights live in that precision, CLIP skip, checkpointing."""

    def alphas_cumprod(self) -> torch.Tensor:
        """The training noise schedule on the device, float32, one value per timestep."""

    def token_vectors(self, text: str) -> torch.Tensor:
        """[n_tokens, token_dim] float32 CPU: the model's embedding of each token of `text`."""

    def encode_images(self, pixels: torch.Tensor, exact: bool = False) -> LatentDist:
        """pixels [B, 3, H, W] in [-1, 1] -> scaled latent distribution; exact=True encodes in float32."""

    def release_image_encoder(self) -> None:
        """Move the VAE off the accelerator once latents are cached (render_preview brings it back)."""

    def tokenize(self, text: str, trigger: str | None = None, n_vectors: int = 0) -> PromptTokens:
        """Tokenize a prompt; each whole-word `trigger` becomes n_vectors slots for trainable vectors."""

    def encode_prompts(self, prompts: Sequence[PromptTokens], vectors: torch.Tensor | None = None) -> Conditioning:
        """Text conditioning for a batch, with `vectors` [n, dim] placed into the slots (gradients flow)."""

    def attach_hypernetwork(self, layers: HypernetworkLayers | None) -> None:
        """Apply these modules to attention contexts (the WebUI's semantics); None detaches."""

    def predict(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        cond: Conditioning,
        sizes: Sequence[SizeCond] | None = None,
    ) -> torch.Tensor:
        """The denoiser's output: noise (epsilon) or v, as prediction_type says.

        `sizes` (one per image) is SDXL's size conditioning; models without it ignore it. None: the latents' own
        size, uncropped (what txt2img uses)."""

    def render_preview(
        self, request: PreviewRequest, trigger: str | None = None, vectors: torch.Tensor | None = None
    ) -> Image.Image:
        """Generate one image with the current trainable state attached."""
