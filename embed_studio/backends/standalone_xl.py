"""The diffusers backend for SDXL: two text encoders, pooled text and size conditioning, an fp32-safe VAE.

Conditioning follows the WebUI v1.10.1 (what txt2img will use the file with): both encoders' penultimate hidden
states side by side (CLIP-L 768 then OpenCLIP-G 1280), the pooled and projected output of the big encoder from
the first 77-token window, emphasis applied to each encoder's output with its own mean restored, and an empty
negative prompt as zeros. The WebUI applies CLIP skip to SDXL only with its "sdxl_clip_l_skip" setting, off by
default; so here, as there by default, CLIP skip is recorded but does not change the conditioning.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from embed_studio.backends.base import SDXL_HYPERNETWORK_REFUSAL, PooledCond, PreviewRequest, PromptTokens, SizeCond
from embed_studio.backends.standalone import StandaloneBackend, apply_emphasis
from embed_studio.errors import FileFormatError, UserInputError

DEFAULT_SIZE = 1024  # SDXL trains and generates at a 1024x1024 area


class StandaloneXLBackend(StandaloneBackend):
    """An SDXL model loaded with diffusers, as the trainer's Backend. Vectors are [n, 768 + 1280] (CLIP-L first)."""

    def __init__(
        self,
        unet: Any,
        vae: Any,
        text_encoder: Any,
        text_encoder_2: Any,
        tokenizer: Any,
        tokenizer_2: Any,
        scheduler_config: dict,
        device: str | torch.device | None = None,
        checkpoint_name: str | None = None,
        checkpoint_hash: str | None = None,
    ):
        if tokenizer.get_vocab() != tokenizer_2.get_vocab():
            # One tokenization serves both encoders (their windows and vector slots must line up), as in SDXL.
            raise FileFormatError(f"{checkpoint_name}: the two SDXL tokenizers have different vocabularies.")
        self.text_encoder_2, self.tokenizer_2 = text_encoder_2, tokenizer_2
        self.width_l = int(text_encoder.config.hidden_size)
        self._injection_g: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        # An fp16-fixed VAE (force_upcast off) may encode in half precision; SDXL's own VAE overflows there.
        self.vae_half_safe = not bool(getattr(vae.config, "force_upcast", True))
        text_encoder_2.requires_grad_(False)
        text_encoder_2.eval()
        super().__init__(unet, vae, text_encoder, tokenizer, scheduler_config, device, checkpoint_name, checkpoint_hash)
        self.family = "sdxl"
        self.token_dim = self.width_l + int(text_encoder_2.config.hidden_size)
        self.default_size = DEFAULT_SIZE
        text_encoder_2.get_input_embeddings().register_forward_hook(self._inject_vectors_g)

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def load_folder(cls, path: Path, device: Any = None) -> StandaloneXLBackend:
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

        subs = ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
        missing = [sub for sub in subs if not (path / sub).is_dir()]
        if missing:
            raise FileFormatError(
                f"{path} is not a complete diffusers SDXL folder: missing {', '.join(missing)}/. "
                "Give the folder that holds model_index.json."
            )
        try:
            parts = (
                UNet2DConditionModel.from_pretrained(path, subfolder="unet"),
                AutoencoderKL.from_pretrained(path, subfolder="vae"),
                CLIPTextModel.from_pretrained(path, subfolder="text_encoder"),
                CLIPTextModelWithProjection.from_pretrained(path, subfolder="text_encoder_2"),
                CLIPTokenizer.from_pretrained(path, subfolder="tokenizer"),
                CLIPTokenizer.from_pretrained(path, subfolder="tokenizer_2"),
            )
            scheduler = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
        except (OSError, ValueError) as e:
            raise FileFormatError(f"Could not load the SDXL model in {path}: {e}") from e
        if getattr(parts[0].config, "addition_embed_type", None) != "text_time":
            raise FileFormatError(f"{path}: the UNet takes no SDXL size/pooled-text conditioning (not an SDXL base).")
        return cls(*parts, dict(scheduler.config), device, checkpoint_name=path.name)

    def use_vae(self, vae_folder: str | Path) -> None:
        """Swap in another VAE (a diffusers AutoencoderKL folder), e.g. the fp16-fixed SDXL VAE."""
        from diffusers import AutoencoderKL

        try:
            vae = AutoencoderKL.from_pretrained(Path(vae_folder).expanduser())
        except (OSError, ValueError) as e:
            raise UserInputError(f"Could not load the VAE {vae_folder}: {e}. Give a diffusers VAE folder.") from e
        vae.requires_grad_(False)
        vae.eval()
        self.vae, self.vae_half_safe = vae, not bool(getattr(vae.config, "force_upcast", True))
        self.scaling_factor = float(vae.config.scaling_factor)
        self.configure(self.precision, self._half_weights, self.clip_skip)

    # -- configuration ---------------------------------------------------------------------
    def configure(
        self, precision: str, half_weights: bool = True, clip_skip: int = 1, gradient_checkpointing: bool = False
    ) -> None:
        super().configure(precision, half_weights, clip_skip, gradient_checkpointing)
        self._half_weights = half_weights
        weight_dtype = self.compute_dtype if half_weights else torch.float32
        self.text_encoder_2.to(self.device, dtype=weight_dtype)
        if not self.vae_half_safe:
            self.vae.to(dtype=torch.float32)  # SDXL's VAE gives NaN latents and images in fp16

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor, exact: bool = False) -> Any:
        return super().encode_images(pixels, exact=exact or not self.vae_half_safe)

    # -- prompts ---------------------------------------------------------------------------
    def token_vectors(self, text: str) -> torch.Tensor:
        from embed_studio.backends.standalone import parse_emphasis

        plain = "".join(piece for piece, _ in parse_emphasis(text))
        rows = []
        for tokenizer, encoder in ((self.tokenizer, self.text_encoder), (self.tokenizer_2, self.text_encoder_2)):
            ids = tokenizer(plain, add_special_tokens=False, truncation=False).input_ids
            weight = encoder.get_input_embeddings().weight
            rows.append(weight[torch.tensor(ids, dtype=torch.long, device=weight.device)].detach().float().cpu())
        if rows[0].shape[0] != rows[1].shape[0]:
            raise UserInputError(
                f"Initialization text {text!r} is {rows[0].shape[0]} token(s) for CLIP-L but {rows[1].shape[0]} for "
                "OpenCLIP-G; use plain words."
            )
        return torch.cat(rows, dim=1)

    def _inject_vectors(self, module: Any, inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
        if self._injection is None:
            return None
        rows, cols, vectors = self._injection
        return output.index_put((rows, cols), vectors[:, : self.width_l].to(output.dtype))

    def _inject_vectors_g(self, module: Any, inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
        if self._injection is None:
            return None
        rows, cols, vectors = self._injection
        return output.index_put((rows, cols), vectors[:, self.width_l :].to(output.dtype))

    def _ids_g(self, ids_l: torch.Tensor, prompts: Sequence[PromptTokens], n_chunks: int) -> torch.Tensor:
        """The big encoder's windows: its pad after the first end token, and at the vector slots (OpenCLIP pools
        at the end token, which must not be mistaken for a slot's placeholder)."""
        ids = ids_l.clone()
        pad_l, pad_g, eos = self.tokenizer.pad_token_id, self.tokenizer_2.pad_token_id, self.tokenizer.eos_token_id
        slot_end = [0] * ids.shape[0]
        for b, prompt in enumerate(prompts):
            for chunk, pos, _ in prompt.slots:
                row = b * n_chunks + chunk
                ids[row, pos] = pad_g
                slot_end[row] = max(slot_end[row], pos + 1)
        for row in range(ids.shape[0]):
            tokens = (ids_l[row, 1:-1] != pad_l).nonzero()
            end = max(int(tokens.max()) + 2 if len(tokens) else 1, slot_end[row])
            ids[row, end] = eos
            ids[row, end + 1 :] = pad_g
        return ids

    def encode_prompts(self, prompts: Sequence[PromptTokens], vectors: torch.Tensor | None = None) -> PooledCond:
        n_chunks = max(len(p.chunks) for p in prompts)
        ids_l = self._padded_ids(prompts, n_chunks)
        ids_g = self._ids_g(ids_l, prompts, n_chunks)
        self._slot_injection(prompts, n_chunks, vectors)
        try:
            with self.autocast():
                out_l = self.text_encoder(ids_l, output_hidden_states=True)
                out_g = self.text_encoder_2(ids_g, output_hidden_states=True)
        finally:
            self._injection = None
        batch = len(prompts)
        z_l = out_l.hidden_states[-2].reshape(batch, -1, self.width_l)
        z_g = out_g.hidden_states[-2]
        z_g = z_g.reshape(batch, -1, z_g.shape[-1])
        # Each encoder restores its own mean after emphasis, as each WebUI embedder does before they are joined.
        context = torch.cat([apply_emphasis(z_l, prompts, n_chunks), apply_emphasis(z_g, prompts, n_chunks)], dim=-1)
        pooled = out_g.text_embeds.reshape(batch, n_chunks, -1)[:, 0]  # the first window's, as the WebUI takes it
        return PooledCond(context, pooled)

    # -- denoiser ----------------------------------------------------------------------------
    def attach_hypernetwork(self, layers: Any) -> None:
        if layers is not None:
            raise UserInputError(SDXL_HYPERNETWORK_REFUSAL)

    def _time_ids(self, latents: torch.Tensor, sizes: Sequence[SizeCond] | None) -> torch.Tensor:
        if sizes is None:
            h, w = latents.shape[-2] * self.latent_factor, latents.shape[-1] * self.latent_factor
            sizes = [SizeCond((h, w), (0, 0), (h, w))] * latents.shape[0]
        rows = [[*s.original, *s.crop, *s.target] for s in sizes]
        return torch.tensor(rows, dtype=torch.float32, device=self.device)

    def predict(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        cond: Any,
        sizes: Sequence[SizeCond] | None = None,
    ) -> torch.Tensor:
        dtype = next(self.unet.parameters()).dtype
        extra = {"text_embeds": cond.pooled.to(dtype), "time_ids": self._time_ids(noisy_latents, sizes).to(dtype)}
        with self.autocast():
            return self._denoiser(
                noisy_latents.to(dtype),
                timesteps,
                encoder_hidden_states=cond.context.to(dtype),
                added_cond_kwargs=extra,
            ).sample

    # -- previews ----------------------------------------------------------------------------
    @torch.no_grad()
    def render_preview(
        self, request: PreviewRequest, trigger: str | None = None, vectors: torch.Tensor | None = None
    ) -> Image.Image:
        from diffusers import StableDiffusionXLPipeline

        pos, neg = self._preview_tokens(request, trigger, vectors)
        with self._drawing():
            positive = self.encode_prompts([pos], vectors)
            negative = self.encode_prompts([neg], vectors)
            if not (request.negative_prompt or "").strip():
                # The WebUI conditions on zeros for an empty negative prompt on SDXL.
                negative = PooledCond(torch.zeros_like(negative.context), torch.zeros_like(negative.pooled))
            pipe = StableDiffusionXLPipeline(
                vae=self.vae,
                text_encoder=self.text_encoder,
                text_encoder_2=self.text_encoder_2,
                tokenizer=self.tokenizer,
                tokenizer_2=self.tokenizer_2,
                unet=self.unet,
                scheduler=self._sampler(request.sampler),
            )
            pipe.set_progress_bar_config(disable=True)
            generator = torch.Generator(device="cpu").manual_seed(int(request.seed))
            dtype = next(self.unet.parameters()).dtype
            with self.autocast():
                image = pipe(
                    prompt_embeds=positive.context.to(dtype),
                    pooled_prompt_embeds=positive.pooled.to(dtype),
                    negative_prompt_embeds=negative.context.to(dtype),
                    negative_pooled_prompt_embeds=negative.pooled.to(dtype),
                    num_inference_steps=request.steps,
                    guidance_scale=request.cfg_scale,
                    generator=generator,
                    height=request.height,
                    width=request.width,
                    output_type="pil",
                ).images[0]
        return image
