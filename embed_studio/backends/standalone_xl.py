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

# SDXL base 1.0's diffusers configs (stabilityai/stable-diffusion-xl-base-1.0): Pony, Illustrious, NoobAI and the
# other single-file SDXL checkpoints share this architecture, so they load with no config from the network.
SDXL_BASE_UNET: dict[str, Any] = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=[320, 640, 1280],
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    cross_attention_dim=2048, attention_head_dim=[5, 10, 20], transformer_layers_per_block=[1, 2, 10],
    use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)  # fmt: skip
SDXL_BASE_VAE: dict[str, Any] = dict(
    sample_size=1024, in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
    block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4, scaling_factor=0.13025, force_upcast=True,
)  # fmt: skip
# The two text encoders; widths, depths and vocabulary are read from a checkpoint's tensors, heads are 64 wide.
SDXL_BASE_TEXT: dict[str, Any] = dict(
    hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, hidden_act="quick_gelu",
    projection_dim=768, vocab_size=49408, max_position_embeddings=77, layer_norm_eps=1e-5,
)  # fmt: skip
SDXL_BASE_TEXT_2: dict[str, Any] = dict(
    hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20, hidden_act="gelu",
    projection_dim=1280, vocab_size=49408, max_position_embeddings=77, layer_norm_eps=1e-5,
)  # fmt: skip
SDXL_BASE_SCHEDULER: dict[str, Any] = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    prediction_type="epsilon", steps_offset=1, clip_sample=False, set_alpha_to_one=False,
    timestep_spacing="leading", interpolation_type="linear", use_karras_sigmas=False,
)  # fmt: skip
HEAD_WIDTH = 64  # both SDXL text encoders (and the WebUI's test checkpoint) use 64-wide attention heads

# Key prefixes of the sgm (original) layout the WebUI and model sites use for SDXL.
SGM_CLIP_L = "conditioner.embedders.0.transformer."
SGM_CLIP_G = "conditioner.embedders.1.model."
# Where the CLIP BPE files may already be on this machine (the WebUI fetches the second on its first start).
TOKENIZER_FILES = (("vocab.json", "merges.txt"), ("tokenizer.json",))  # either set makes a CLIP tokenizer
TOKENIZER_SOURCES = (("stabilityai/stable-diffusion-xl-base-1.0", "tokenizer"), ("openai/clip-vit-large-patch14", ""))


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

    @classmethod
    def load_single_file(cls, path: Path, device: Any = None) -> StandaloneXLBackend:
        """An SDXL base checkpoint in the sgm layout (.safetensors as model sites and the WebUI have them, or a
        .ckpt read through the weights-only loader), offline.

        Its architecture is SDXL base's unless an sgm .yaml lies beside it (as the WebUI keeps for other shapes);
        the tokenizer comes from that yaml's CLIP folder or the Hugging Face cache. Nothing is downloaded."""
        from safetensors.torch import load_file

        from embed_studio.backends.standalone import _short_hash, pickled_state

        if path.suffix.lower() != ".safetensors":
            state = pickled_state(path)
        else:
            try:
                state = load_file(str(path))
            except Exception as e:  # safetensors raises its own error types for damaged files
                raise FileFormatError(f"{path.name}: not a readable .safetensors checkpoint ({e}).") from e
        if f"{SGM_CLIP_L}text_model.embeddings.token_embedding.weight" not in state:
            raise FileFormatError(
                f"{path.name} has no CLIP-L text encoder ({SGM_CLIP_L}*): an SDXL refiner or another sgm model. "
                "Train on an SDXL base model (Pony, Illustrious and NoobAI are)."
            )
        yaml_path = path.with_suffix(".yaml")
        original = _read_sgm_yaml(yaml_path) if yaml_path.is_file() else None
        tokenizer, tokenizer_2 = _local_tokenizers(original, path.name)
        try:
            unet_config, vae_config, prediction = _sgm_configs(original, state)
            parts = _sgm_models(state, unet_config, vae_config, tokenizer)
        except FileFormatError:
            raise
        except Exception as e:  # shape mismatches, missing keys: the file is not what its config says
            hint = (
                f"its {yaml_path.name}" if original else f"SDXL base (put its sgm .yaml beside it as {yaml_path.name})"
            )
            raise FileFormatError(
                f"{path.name} does not match {hint}: {' '.join(str(e).split())[:300]}. Or convert it to a diffusers "
                "folder and give that folder."
            ) from e
        del state
        scheduler = dict(SDXL_BASE_SCHEDULER, prediction_type=prediction)
        return cls(*parts, tokenizer, tokenizer_2, scheduler, device, path.stem, _short_hash(path))

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

    def _denoising_parts(self) -> tuple[Any, ...]:
        return (self.unet, self.text_encoder, self.text_encoder_2)

    def _vae_dtype(self, weight_dtype: torch.dtype) -> torch.dtype:
        # SDXL's own VAE gives NaN latents and images in fp16; never cast it down, not even on the way (its weights
        # would come back rounded).
        return weight_dtype if self.vae_half_safe else torch.float32

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
        self._place()
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
        self._place()
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
                scheduler=self._sampler(request.sampler, request.scheduler),
            )
            return self._draw(
                pipe, request, prompt_embeds=positive.context, pooled_prompt_embeds=positive.pooled,
                negative_prompt_embeds=negative.context, negative_pooled_prompt_embeds=negative.pooled,
            )  # fmt: skip


def _read_sgm_yaml(yaml_path: Path) -> dict:
    import yaml

    try:
        original = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
        original["model"]["params"]["network_config"]["params"]
    except (OSError, ValueError, TypeError, KeyError, yaml.YAMLError) as e:
        raise FileFormatError(
            f"{yaml_path}: not an SDXL (sgm) model config ({e}). Remove it to load the checkpoint as SDXL base."
        ) from e
    return original


def _embedders(original: dict | None) -> list[dict]:
    if original is None:
        return []
    params = original["model"]["params"].get("conditioner_config", {}).get("params", {})
    return [e for e in params.get("emb_models", []) if isinstance(e, dict)]


def _local_tokenizers(original: dict | None, what: str) -> tuple[Any, Any]:
    """SDXL's two tokenizers: one CLIP BPE vocabulary, the second padding with "!" (OpenCLIP pads with id 0)."""
    from transformers import CLIPTokenizer

    folders: list[Path] = []
    for embedder in _embedders(original)[:1]:
        version = (embedder.get("params") or {}).get("version")
        if isinstance(version, str) and version and Path(version).expanduser().is_dir():
            folders.append(Path(version).expanduser())
    folders += [f for f in (_cached_folder(repo, sub) for repo, sub in TOKENIZER_SOURCES) if f is not None]
    for folder in folders:
        # transformers makes an empty tokenizer from a folder without these files instead of failing.
        if not any(all((folder / name).is_file() for name in names) for names in TOKENIZER_FILES):
            continue
        try:
            tokenizer = CLIPTokenizer.from_pretrained(str(folder))
            tokenizer_2 = CLIPTokenizer.from_pretrained(str(folder), pad_token="!")
        except (OSError, ValueError):
            continue
        if len(tokenizer) > 2 * 256:  # a CLIP BPE vocabulary holds at least its byte alphabet twice
            return tokenizer, tokenizer_2
    raise FileFormatError(
        f"{what} needs the CLIP tokenizer files, which are not on this machine (nothing is downloaded here): run "
        "`huggingface-cli download openai/clip-vit-large-patch14 vocab.json merges.txt tokenizer_config.json "
        "special_tokens_map.json` once, or give a diffusers SDXL folder instead."
    )


def _cached_folder(repo: str, sub: str) -> Path | None:
    """The folder holding `repo`'s tokenizer files in the local Hugging Face cache, or None; never downloads."""
    from huggingface_hub import try_to_load_from_cache

    for names in TOKENIZER_FILES:
        found = try_to_load_from_cache(repo, f"{sub}/{names[0]}" if sub else names[0])
        if isinstance(found, str):
            return Path(found).parent
    return None


def _sgm_configs(original: dict | None, state: dict) -> tuple[dict, dict, str]:
    """The UNet and VAE configs and the prediction type: SDXL base's, or what the sgm yaml beside the file says."""
    if original is None:
        return dict(SDXL_BASE_UNET), dict(SDXL_BASE_VAE), "epsilon"
    from diffusers.loaders.single_file_utils import (
        create_unet_diffusers_config_from_ldm,
        create_vae_diffusers_config_from_ldm,
    )

    unet = create_unet_diffusers_config_from_ldm(original, state)
    # diffusers assumes SDXL's 256-wide size embedding; the yaml's size embedders say what this model uses.
    widths = [
        (e.get("params") or {}).get("outdim") for e in _embedders(original) if "Timestep" in str(e.get("target", ""))
    ]
    if widths and isinstance(widths[0], int):
        unet["addition_time_embed_dim"] = widths[0]
    vae = dict(create_vae_diffusers_config_from_ldm(original, state), force_upcast=True)
    denoiser = str(original["model"]["params"].get("denoiser_config", {}))
    return unet, vae, "v_prediction" if "VScaling" in denoiser else "epsilon"


def _text_config(template: dict, state: dict, prefix: str, tokenizer: Any, layers_key: str) -> Any:
    """A CLIP text config with the widths, depth and vocabulary of the tensors under `prefix`."""
    from transformers import CLIPTextConfig

    embed = "text_model.embeddings." if prefix == SGM_CLIP_L else ""
    tokens = state[f"{prefix}{embed}token_embedding.weight"]
    positions = state[f"{prefix}{embed}position_embedding.weight" if embed else f"{prefix}positional_embedding"]
    mlp = state[f"{prefix}{layers_key}.0.{'mlp.fc1' if embed else 'mlp.c_fc'}.weight"]
    depth = len({k[len(prefix) :].split(".")[3 if embed else 2] for k in state if k.startswith(prefix + layers_key)})
    width = int(tokens.shape[1])
    return CLIPTextConfig(
        **dict(
            template, hidden_size=width, intermediate_size=int(mlp.shape[0]), num_hidden_layers=depth,
            num_attention_heads=max(1, width // HEAD_WIDTH), vocab_size=int(tokens.shape[0]),
            max_position_embeddings=int(positions.shape[0]), projection_dim=width,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )  # fmt: skip


def _sgm_models(state: dict, unet_config: dict, vae_config: dict, tokenizer: Any) -> tuple[Any, Any, Any, Any]:
    """UNet, VAE and both text encoders with the checkpoint's weights, every tensor accounted for."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        convert_open_clip_checkpoint,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    def filled(model: Any, weights: dict) -> Any:
        # Built on the meta device and given the checkpoint's tensors: no random init of billions of weights.
        model.load_state_dict(weights, strict=True, assign=True)
        if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
            raise FileFormatError("some weights are missing from the checkpoint")
        return model

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config)
        vae = AutoencoderKL.from_config(vae_config)
    unet = filled(unet, convert_ldm_unet_checkpoint(state, unet.config))
    vae = filled(vae, convert_ldm_vae_checkpoint(state, vae.config))

    config_l = _text_config(SDXL_BASE_TEXT, state, SGM_CLIP_L, tokenizer, "text_model.encoder.layers")
    config_g = _text_config(SDXL_BASE_TEXT_2, state, SGM_CLIP_G, tokenizer, "transformer.resblocks")
    with torch.device("meta"):
        text_encoder, text_encoder_2 = CLIPTextModel(config_l), CLIPTextModelWithProjection(config_g)
    weights_l = {k[len(SGM_CLIP_L) :]: v for k, v in state.items() if k.startswith(SGM_CLIP_L)}
    weights_g = convert_open_clip_checkpoint(text_encoder_2, state, prefix=SGM_CLIP_G)
    for model, weights in ((text_encoder, weights_l), (text_encoder_2, weights_g)):
        if not hasattr(model, "text_model"):  # transformers 5 flattened CLIPTextModel
            weights = {k.removeprefix("text_model."): v for k, v in weights.items()}
        weights = {k: v for k, v in weights.items() if not k.endswith("position_ids")}
        missing, unexpected = model.load_state_dict(weights, strict=False, assign=True)
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            raise FileFormatError(f"text encoder weights do not match ({(missing or unexpected)[:3]})")
        # Position ids are computed, not stored (files may or may not carry them): made here, not left on meta.
        for module in model.modules():
            ids = getattr(module, "position_ids", None)
            if isinstance(ids, torch.Tensor) and ids.is_meta:
                persistent = "position_ids" not in module._non_persistent_buffers_set
                fresh = torch.arange(ids.shape[-1]).expand((1, -1))
                module.register_buffer("position_ids", fresh, persistent=persistent)
        if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
            raise FileFormatError("some text encoder weights are missing from the checkpoint")
    return unet, vae, text_encoder, text_encoder_2
