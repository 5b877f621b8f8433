"""The WebUI backend: trains on the WebUI's loaded model through its own prompt conditioning, CLIP skip and VAE.

Prompts are tokenized by the hijacked text encoder's own `tokenize_line` (its tokenizer, 75-token chunks,
comma backtrack, emphasis setting, BREAK) with a temporary Embedding object registered for the trigger
word only for the duration of that call, and encoded by its own `process_tokens` with the trainable
tensor handed to `EmbeddingsWithFixes` as a fix, so a trained embedding conditions the UNet exactly as
it will in txt2img. The registration never outlives a call, so the WebUI's embedding reloads cannot
swap the object being trained.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from modules import call_queue, devices, paths_internal, sd_hijack, sd_hijack_checkpoint, sd_vae, shared
from modules.textual_inversion.textual_inversion import Embedding
from PIL import Image

from embed_studio.backends.base import (
    PRECISIONS,
    SDXL_HYPERNETWORK_REFUSAL,
    HypernetworkLayers,
    LatentDist,
    PooledCond,
    PreviewRequest,
    PromptTokens,
    SizeCond,
)
from embed_studio.backends.provider import CHECKPOINT_VAE
from embed_studio.backends.samplers import AUTOMATIC, sampler_key
from embed_studio.errors import UserInputError

CLIP_SKIP_KEY = "CLIP_stop_at_last_layers"
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_OTHER_FIXES_LIMIT = 8192  # prompts whose other (already installed) embeddings we remember


class _SettingOverride:
    """One WebUI setting held at our value while training, then put back exactly as it was.

    Only what we changed is restored, with the type and presence it had (a key absent from config.json stays
    absent, an int stays an int); a change the user makes in Settings meanwhile is theirs to keep.
    """

    _ABSENT = object()

    def __init__(self, key: str, value: Any):
        self.key = key
        self.value = value
        self._original = shared.opts.data.get(key, self._ABSENT)
        self._user_value: Any = self._ABSENT
        self._changed = False  # whether we wrote the key
        self._held = False
        self.hold()

    def _current(self) -> Any:
        return shared.opts.data.get(self.key, shared.opts.get_default(self.key))

    def _note_user_change(self) -> None:
        if self._held and self._current() != self.value:
            self._user_value = shared.opts.data.get(self.key, self._ABSENT)

    def hold(self, value: Any = _ABSENT) -> None:
        """Set our value (again, or a new one), noting a value the user set since the last hold."""
        self._note_user_change()
        if value is not self._ABSENT:
            self.value = value
        if self._current() != self.value:
            shared.opts.data[self.key] = self.value
            self._changed = True
        self._held = True

    def restore(self) -> None:
        if not self._held:
            return
        self._note_user_change()
        self._held = False
        if self._user_value is not self._ABSENT:
            shared.opts.data[self.key] = self._user_value
        elif self._changed:
            if self._original is self._ABSENT:
                shared.opts.data.pop(self.key, None)
            else:
                shared.opts.data[self.key] = self._original
        self._changed = False


class _TrainedVectors:
    """What EmbeddingsWithFixes reads from a fix: `.vec` (here the live, trainable tensor)."""

    def __init__(self, name: str, vec: torch.Tensor | dict[str, torch.Tensor]):
        self.name = name
        self.vec = vec
        self.vectors = int(next(iter(vec.values())).shape[0] if isinstance(vec, dict) else vec.shape[0])
        self.shorthash = None


class _FloatModule:
    """Runs one of our fp32 hypernetwork modules on a context of any dtype (plain object: never a submodule)."""

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.float()).to(x.dtype)


class _AttachedHypernetwork:
    """The shape of the WebUI's Hypernetwork that apply_hypernetworks() uses: `.layers[width] = (k, v)`."""

    def __init__(self, layers: HypernetworkLayers):
        self.name = "embed-studio-training"
        self.layers = {int(w): (_FloatModule(pair[0]), _FloatModule(pair[1])) for w, pair in layers.items()}
        self.multiplier = 1.0

    def set_multiplier(self, multiplier: float) -> None:
        self.multiplier = multiplier

    def shorthash(self) -> None:
        return None


def _require_sd(model: Any) -> None:
    if model is None:
        raise UserInputError("The WebUI has no model loaded. Pick a checkpoint at the top of the page, then train.")
    if getattr(model, "is_sd3", False) or (
        getattr(model, "conditioner", None) is not None and not getattr(model, "is_sdxl", False)
    ):
        raise UserInputError(
            "The loaded checkpoint is neither SD 1.x/2.x nor SDXL; Embed Studio cannot train on it. Load one of those."
        )


def checkpoint_identity(model: Any) -> tuple[str | None, str | None, str]:
    """(short hash, name recorded in files, file name shown to the user) of the loaded checkpoint, as the WebUI
    writes them into embeddings and hypernetworks."""
    info = getattr(model, "sd_checkpoint_info", None)
    if info is None:
        return None, None, "no checkpoint"
    shorthash = info.shorthash or info.calculate_shorthash()
    return shorthash, info.name_for_extra, info.name


class WebUIBackend:
    """shared.sd_model (SD 1.x/2.x, eps or v) as the trainer's Backend; use it inside WebUIProvider.session()."""

    def __init__(self, clip_skip: int = 1, clip_skip_setting: _SettingOverride | None = None):
        model = shared.sd_model
        _require_sd(model)
        if getattr(shared.opts, "use_old_emphasis_implementation", False):
            # txt2img would then encode prompts with the pre-2023 code, unlike what training optimises for.
            raise UserInputError(
                "Turn off Settings → Compatibility → 'Use old emphasis implementation' to train here, so prompts "
                "are encoded in training as they are in txt2img."
            )
        self.model = model
        # What is loaded now, not what was asked for: shown in the job's text and the WebUI's log.
        self.vae_label = Path(sd_vae.loaded_vae_file).name if sd_vae.loaded_vae_file else CHECKPOINT_VAE
        self.device = torch.device(devices.device)
        self.prediction_type = "v_prediction" if getattr(model, "parameterization", "eps") == "v" else "epsilon"
        self.token_dim = int(self._token_embedding().wrapped.weight.shape[1])
        self.family = "sd2" if getattr(model, "is_sd2", False) or self.token_dim == 1024 else "sd1"
        self.latent_factor = 2 ** (int(model.first_stage_model.encoder.num_resolutions) - 1)
        self.checkpoint_hash, self.checkpoint_name, self.checkpoint_title = checkpoint_identity(model)
        self.context_sizes = self._context_sizes()
        self.clip_skip = int(clip_skip)
        # The user's setting is put back by whoever made this override (the provider's session), or by close().
        self._own_clip_skip_setting = clip_skip_setting is None
        self._clip_skip_setting = clip_skip_setting or _SettingOverride(CLIP_SKIP_KEY, self.clip_skip)
        self.precision = "fp32"
        self.compute_dtype = torch.float32
        self._use_autocast = False
        self._checkpointing_added = False
        self._saved_hypernetworks: list | None = None
        self._vae_home: torch.device | None = None
        self._other_fixes: dict[PromptTokens, tuple[tuple[tuple[int, Any], ...], ...]] = {}
        self._db_lock = threading.Lock()
        # The WebUI leaves the UNet's weights trainable; freezing them stops backward() from filling
        # gradients for the whole model. Restored in close().
        self._frozen = [p for p in model.parameters() if p.requires_grad]
        for p in self._frozen:
            p.requires_grad_(False)
        self._apply_clip_skip()

    # -- helpers ---------------------------------------------------------------------------
    @property
    def clip(self) -> Any:
        # Looked up each time: a VAE reload re-hijacks the model and replaces this object.
        return self.model.cond_stage_model

    def _token_embedding(self) -> Any:
        for module in self.model.cond_stage_model.modules():
            if isinstance(module, sd_hijack.EmbeddingsWithFixes):
                return module
        raise UserInputError("The loaded model's text encoder is not hijacked by the WebUI; reload the checkpoint.")

    def _context_sizes(self) -> tuple[int, ...]:
        sizes = set()
        for module in self.model.model.diffusion_model.modules():
            to_k = getattr(module, "to_k", None)
            if isinstance(to_k, torch.nn.Linear) and hasattr(module, "to_q"):
                sizes.add(int(to_k.in_features))
        return tuple(sorted(sizes))

    def _apply_clip_skip(self) -> None:
        """Keep the WebUI's CLIP skip at ours while training; a change made meanwhile is restored afterwards."""
        self._clip_skip_setting.hold(self.clip_skip)

    def autocast(self) -> AbstractContextManager[Any]:
        if not self._use_autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.compute_dtype)

    @contextlib.contextmanager
    def _registered(self, name: str | None, vec: torch.Tensor | None) -> Iterator[Any]:
        """`name` resolves to a temporary Embedding holding `vec` in the WebUI's database, for this block only."""
        if not name or vec is None:
            yield None
            return
        db = sd_hijack.model_hijack.embedding_db
        temp = Embedding(self._as_vec(vec), name)
        temp.vectors = int(vec.shape[0])
        temp.shape = int(vec.shape[-1])
        with self._db_lock:
            previous = db.word_embeddings.get(name)
            db.register_embedding_by_name(temp, self.model, name)
            try:
                yield temp
            finally:
                if db.word_embeddings.get(name) is temp:
                    db.register_embedding_by_name(previous, self.model, name)

    def _as_vec(self, vec: torch.Tensor) -> Any:
        """Trainable vectors as the WebUI's Embedding.vec holds them for this model."""
        return vec

    @property
    def _text_model(self) -> Any:
        """The hijacked text encoder whose tokenize_line/empty_chunk/process_tokens prompts go through."""
        return self.clip

    @property
    def shared_weight_dtype(self) -> torch.dtype:
        """The dtype the WebUI holds the model in; never converted here (txt2img shares it)."""
        return next(self.model.model.diffusion_model.parameters()).dtype

    # -- Backend ---------------------------------------------------------------------------
    def configure(
        self, precision: str, half_weights: bool = True, clip_skip: int = 1, gradient_checkpointing: bool = False
    ) -> None:
        if precision not in PRECISIONS:
            raise UserInputError(f"Precision {precision!r} is not one of {', '.join(PRECISIONS)}.")
        if precision == "fp16" and self.device.type == "cpu":
            raise UserInputError("fp16 needs a GPU; on the CPU use fp32 (the WebUI runs with --use-cpu).")
        if precision == "fp32" and self.shared_weight_dtype != torch.float32:
            raise UserInputError(
                "The WebUI holds this model in half precision, so training cannot run in fp32. Choose fp16 (or bf16), "
                "or start the WebUI with --no-half."
            )
        layers = self._text_layers()
        if not 1 <= clip_skip <= layers:
            raise UserInputError(f"CLIP skip {clip_skip} must be between 1 and {layers} for this model.")
        self.precision, self.compute_dtype, self.clip_skip = precision, _DTYPES[precision], int(clip_skip)
        # The WebUI's model is shared with txt2img: its weights are never converted; lower precisions run
        # under autocast like the WebUI's own trainer (devices.autocast()).
        self._use_autocast = precision != "fp32" and self.device.type != "cpu"
        if gradient_checkpointing and not self._checkpointing_added:
            sd_hijack_checkpoint.add()
            self._checkpointing_added = True
        elif not gradient_checkpointing and self._checkpointing_added:
            sd_hijack_checkpoint.remove()
            self._checkpointing_added = False
        self._apply_clip_skip()

    def _text_layers(self) -> int:
        wrapped = getattr(self.clip, "wrapped", None)
        transformer = getattr(wrapped, "transformer", None)
        if transformer is not None:  # SD1: transformers' CLIPTextModel
            return int(transformer.config.num_hidden_layers)
        open_clip = getattr(wrapped, "model", None)
        if open_clip is not None:  # SD2: open_clip; the WebUI already drops its last layer ("penultimate")
            return int(len(open_clip.transformer.resblocks))
        return 12

    def alphas_cumprod(self) -> torch.Tensor:
        # The schedule the model was trained with: the WebUI may rescale alphas_cumprod for sampling
        # ("Zero Terminal SNR", fp16 downcast) and keeps the original beside it.
        acp = getattr(self.model, "alphas_cumprod_original", None)
        if acp is None:
            acp = self.model.alphas_cumprod
        return acp.detach().to(self.device, torch.float32)

    def token_vectors(self, text: str) -> torch.Tensor:
        ids = self.clip.tokenize([text])[0]
        embedding = self._token_embedding().wrapped
        weight = embedding.weight
        with torch.no_grad():
            out = embedding(torch.tensor(ids, dtype=torch.long, device=weight.device))
        return out.detach().float().cpu()

    def _restore_vae_device(self) -> None:
        if self._vae_home is not None:
            self.model.first_stage_model.to(self._vae_home)
            self._vae_home = None

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor, exact: bool = False) -> LatentDist:
        self._restore_vae_device()
        vae = self.model.first_stage_model
        old_dtype = next(vae.parameters()).dtype
        dtype = torch.float32 if exact else old_dtype
        if dtype != old_dtype:
            vae.to(dtype=dtype)
        try:
            ctx = contextlib.nullcontext() if exact else self.autocast()
            with ctx:
                dist = self.model.encode_first_stage(pixels.to(self.device, dtype))
            # get_first_stage_encoding(): sample * scale_factor; we keep mean and std to sample per step.
            scale = float(self.model.scale_factor)
            return LatentDist(dist.mean.float() * scale, dist.std.float() * scale)
        finally:
            if dtype != old_dtype:
                vae.to(dtype=old_dtype)

    def release_image_encoder(self) -> None:
        # Under --medvram/--lowvram the WebUI's hooks already move the VAE on and off the GPU.
        if self.device.type == "cpu" or getattr(self.model, "lowvram", False):
            return
        vae = self.model.first_stage_model
        self._vae_home = next(vae.parameters()).device
        vae.to(devices.cpu)
        devices.torch_gc()

    def tokenize(self, text: str, trigger: str | None = None, n_vectors: int = 0) -> PromptTokens:
        placeholder = torch.zeros(n_vectors, self.token_dim) if trigger and n_vectors > 0 else None
        with self._registered(trigger, placeholder) as temp:
            chunks, _ = self._text_model.tokenize_line(text)
        rows, weights, slots, others = [], [], [], []
        for index, chunk in enumerate(chunks):
            rows.append(tuple(int(t) for t in chunk.tokens))
            weights.append(tuple(float(m) for m in chunk.multipliers))
            other = []
            for offset, embedding in chunk.fixes:
                # By identity, or by name in case the WebUI reloaded its embeddings meanwhile.
                if temp is not None and (embedding is temp or embedding.name == trigger):
                    count = min(n_vectors, len(chunk.tokens) - offset - 1)
                    slots.extend((index, offset + 1 + v, v) for v in range(count))
                else:
                    other.append((int(offset), embedding))  # another installed embedding: inserted as in txt2img
            others.append(tuple(other))
        emphasis = tuple(weights) if any(w != 1.0 for row in weights for w in row) else None
        tokens = PromptTokens(tuple(rows), tuple(slots), emphasis)
        if any(others):
            if len(self._other_fixes) >= _OTHER_FIXES_LIMIT:
                self._other_fixes.clear()
            self._other_fixes[tokens] = tuple(others)
        return tokens

    def encode_prompts(self, prompts: Sequence[PromptTokens], vectors: torch.Tensor | None = None) -> torch.Tensor:
        self._apply_clip_skip()
        trained = (
            _TrainedVectors("embed-studio", self._as_vec(vectors.to(self.device))) if vectors is not None else None
        )
        n_chunks = max(len(p.chunks) for p in prompts)
        if len(prompts) > 1 and any(p.emphasis for p in prompts):
            # The WebUI's emphasis restores the mean over the whole batch it is given, and txt2img gives it one
            # prompt: encode emphasized prompts one by one so each is conditioned exactly as in txt2img.
            return torch.cat([self._encode([p], trained, n_chunks) for p in prompts])
        return self._encode(prompts, trained, n_chunks)

    def _chunk_batch(
        self, prompts: Sequence[PromptTokens], trained: _TrainedVectors | None, index: int, empty: Any
    ) -> tuple[list, list, list]:
        """Window `index` of each prompt as process_tokens takes it: tokens, multipliers and embedding fixes."""
        tokens, multipliers, fixes = [], [], []
        for prompt in prompts:
            if index >= len(prompt.chunks):
                tokens.append(list(empty.tokens))
                multipliers.append(list(empty.multipliers))
                fixes.append([])
                continue
            row = prompt.chunks[index]
            tokens.append(list(row))
            multipliers.append(list(prompt.emphasis[index]) if prompt.emphasis else [1.0] * len(row))
            row_fixes = list(self._other_fixes.get(prompt, ((),) * len(prompt.chunks))[index])
            if trained is not None:
                # One fix per run of slots: EmbeddingsWithFixes inserts vec after `offset`.
                row_fixes += [(pos - 1, trained) for c, pos, v in prompt.slots if c == index and v == 0]
            fixes.append(row_fixes)
        return tokens, multipliers, fixes

    def _encode(self, prompts: Sequence[PromptTokens], trained: _TrainedVectors | None, n_chunks: int) -> torch.Tensor:
        """The WebUI's TextConditionalModel.forward() for already tokenized prompts, with our fixes."""
        clip = self.clip
        hijack = sd_hijack.model_hijack
        empty = clip.empty_chunk()
        zs = []
        try:
            with self.autocast():
                for index in range(n_chunks):
                    tokens, multipliers, fixes = self._chunk_batch(prompts, trained, index, empty)
                    hijack.fixes = fixes
                    zs.append(clip.process_tokens(tokens, multipliers))
        finally:
            hijack.fixes = None
        return torch.hstack(zs)

    def attach_hypernetwork(self, layers: HypernetworkLayers | None) -> None:
        if layers is None:
            if self._saved_hypernetworks is not None:
                shared.loaded_hypernetworks = self._saved_hypernetworks
                self._saved_hypernetworks = None
                self._forget_layer_refs()
            return
        for pair in layers.values():
            for module in pair:
                module.to(self.device)
        if self._saved_hypernetworks is None:
            self._saved_hypernetworks = shared.loaded_hypernetworks
        # apply_hypernetworks() reads shared.loaded_hypernetworks on every attention call.
        shared.loaded_hypernetworks = [_AttachedHypernetwork(layers)]

    def _forget_layer_refs(self) -> None:
        # attention_CrossAttention_forward stores the modules it used on the layer (hyper_k/hyper_v).
        for module in self.model.model.diffusion_model.modules():
            for attr in ("hyper_k", "hyper_v"):
                if isinstance(module.__dict__.get(attr), _FloatModule):
                    del module.__dict__[attr]

    def predict(
        self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, cond: torch.Tensor, sizes: Any = None
    ) -> torch.Tensor:
        with self.autocast():
            return self.model.apply_model(noisy_latents, timesteps, cond)

    @torch.no_grad()
    def render_preview(
        self, request: PreviewRequest, trigger: str | None = None, vectors: torch.Tensor | None = None
    ) -> Image.Image:
        from contextlib import closing

        from modules import processing

        sampler, scheduler = webui_sampler(request.sampler, request.scheduler)
        self._apply_clip_skip()
        vae_home = self._vae_home
        self._restore_vae_device()
        p = processing.StableDiffusionProcessingTxt2Img(
            sd_model=self.model,
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            steps=request.steps,
            cfg_scale=request.cfg_scale,
            seed=int(request.seed),
            width=request.width,
            height=request.height,
            sampler_name=sampler,
            scheduler=scheduler,
            do_not_save_grid=True,
            do_not_save_samples=True,
            do_not_reload_embeddings=True,  # would replace what we registered
            disable_extra_networks=True,  # would replace the attached hypernetwork
        )
        # The WebUI caches conditionings by prompt, not by embedding values: each preview encodes afresh.
        p.cached_c = [None, None]
        p.cached_uc = [None, None]
        vec = vectors.detach().to(self.device) if vectors is not None else None
        try:
            with self._registered(trigger, vec), closing(p):
                processed = processing.process_images(p)
        finally:
            if vae_home is not None:
                self.release_image_encoder()
        if not processed.images:
            raise UserInputError("The preview produced no image (interrupted?).")
        return processed.images[0]

    # -- end of a session ----------------------------------------------------------------
    def close(self) -> None:
        """Undo everything this backend changed on the shared model (also after an error)."""
        sd_hijack.model_hijack.fixes = None
        self.attach_hypernetwork(None)
        if self._checkpointing_added:
            sd_hijack_checkpoint.remove()
            self._checkpointing_added = False
        self._restore_vae_device()
        for p in self._frozen:
            p.requires_grad_(True)
        self._frozen = []
        self._other_fixes.clear()
        if self._own_clip_skip_setting:
            self._clip_skip_setting.restore()


def _scheduler_key(name: str) -> str:
    return name.strip().lower().replace(" ", "_")


def webui_sampler(name: str, scheduler: str = AUTOMATIC, what: str = "Preview sampler") -> tuple[str, str]:
    """The WebUI's sampler name and schedule-type label for a preview, or UserInputError in one line listing them.

    Takes the WebUI's names ('DPM++ 2M SDE', 'Karras'), the form's keys ('dpmpp_2m_sde', 'karras'), aliases
    ('k_dpmpp_2m') and, with schedule type Automatic, a name carrying one like the standalone table's
    ('dpmpp_2m_karras'). Checked here because the WebUI's processing swaps an unknown name for its default sampler
    with only a log line, so a typo would draw every preview with another sampler.
    """
    from modules import sd_samplers, sd_schedulers

    samplers: dict[str, str] = {}
    for data in sd_samplers.all_samplers:
        for spelling in (data.name, *(data.aliases or [])):
            samplers.setdefault(sampler_key(spelling), data.name)
    schedulers: dict[str, str] = {}
    for sched in sd_schedulers.schedulers:
        for spelling in (sched.name, sched.label, *(sched.aliases or [])):
            schedulers.setdefault(_scheduler_key(spelling), sched.label)
    label = schedulers.get(_scheduler_key(scheduler or AUTOMATIC))
    if label is None:
        names = ", ".join(x.label for x in sd_schedulers.schedulers)
        raise UserInputError(f"Schedule type {scheduler!r} is not one of the WebUI's: {names}.")
    key = sampler_key(name or "")
    if key not in samplers and label == AUTOMATIC:
        for suffix, suffix_label in schedulers.items():
            base = key.removesuffix("_" + suffix)
            if base != key and base in samplers:
                key, label = base, suffix_label
                break
    if key not in samplers:
        visible = ", ".join(sampler_key(x.name) for x in sd_samplers.visible_samplers())
        raise UserInputError(f"{what} {name!r} is not one of the WebUI's: {visible} (or their names in txt2img).")
    return samplers[key], label


def _vae_file(vae: str) -> str | None:
    """The file for a VAE choice; None = the checkpoint's own."""
    if not vae or vae == CHECKPOINT_VAE:
        return None
    sd_vae.refresh_vae_list()
    path = sd_vae.vae_dict.get(vae)
    if path is None:
        raise UserInputError(
            f"VAE {vae!r} is not in the WebUI's VAE list ({', '.join(sd_vae.vae_dict) or 'empty'}). "
            f"Pick one of them or {CHECKPOINT_VAE!r}."
        )
    return path


def _clear_extra_networks() -> None:
    """Deactivate the LoRAs/hypernetworks the last generation left applied, so training sees the bare model."""
    from modules import extra_networks, processing

    try:
        extra_networks.activate(processing.StableDiffusionProcessingTxt2Img(sd_model=shared.sd_model), {})
    except Exception as e:  # an extension's network type failing must not block training
        print(f"Embed Studio: could not deactivate extra networks before training: {e}")


_SIZE_KEYS = (
    ("original_size_as_tuple", "original"),
    ("crop_coords_top_left", "crop"),
    ("target_size_as_tuple", "target"),
)


class WebUIXLBackend(WebUIBackend):
    """shared.sd_model when it is SDXL (sgm DiffusionEngine): vectors are [n, 768 + 1280], CLIP-L's first.

    Each prompt window goes through both hijacked embedders' own process_tokens (their emphasis, their CLIP skip
    handling, EmbeddingsWithFixes picking 'clip_l'/'clip_g' from the vectors), joined as the conditioner joins
    them; the pooled output of OpenCLIP-G's first window and each image's size/crop embeddings make the UNet's
    vector input, as in GeneralConditioner.
    """

    def __init__(self, clip_skip: int = 1, clip_skip_setting: _SettingOverride | None = None):
        super().__init__(clip_skip, clip_skip_setting)
        conditioner = self.model.conditioner
        self.text_embedders = [e for e in conditioner.embedders if hasattr(e, "process_tokens")]
        if len(self.text_embedders) != 2:
            self.close()
            raise UserInputError(
                "The loaded SDXL checkpoint has no CLIP-L text encoder (a refiner?); train on an SDXL base model."
            )
        probe = ["a photo, of (cat) 1girl"]
        if self.text_embedders[0].tokenize(probe) != self.text_embedders[1].tokenize(probe):
            self.close()
            raise UserInputError("The loaded SDXL checkpoint's two tokenizers disagree; Embed Studio cannot train it.")
        self.widths = [int(e.encode_embedding_init_text(",", 1).shape[-1]) for e in self.text_embedders]
        self.keys = [getattr(e, "textual_inversion_key", None) for e in self._fix_modules()]
        self.family = "sdxl"
        self.token_dim = sum(self.widths)
        self.size_embedders = {
            getattr(e, "input_key", None): e for e in conditioner.embedders if not hasattr(e, "process_tokens")
        }
        missing = [key for key, _ in _SIZE_KEYS if key not in self.size_embedders]
        if missing:
            self.close()
            raise UserInputError(f"The loaded SDXL checkpoint has no {', '.join(missing)} conditioning.")

    def _fix_modules(self) -> list[Any]:
        return [m for m in self.model.cond_stage_model.modules() if isinstance(m, sd_hijack.EmbeddingsWithFixes)]

    @property
    def _text_model(self) -> Any:
        return self.text_embedders[0]

    def _as_vec(self, vec: torch.Tensor) -> Any:
        # The slices keep the gradient path to the one trainable tensor.
        return {"clip_l": vec[:, : self.widths[0]], "clip_g": vec[:, self.widths[0] :]}

    def token_vectors(self, text: str) -> torch.Tensor:
        with torch.no_grad():
            out = self.model.conditioner.encode_embedding_init_text(text, 75)
        return out.detach().float().cpu()

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor, exact: bool = False) -> LatentDist:
        # SDXL's VAE overflows in half precision (NaN latents): always encode in float32.
        self._restore_vae_device()
        vae = self.model.first_stage_model
        old_dtype = next(vae.parameters()).dtype
        if old_dtype != torch.float32:
            vae.to(dtype=torch.float32)
        try:
            moments = vae.quant_conv(vae.encoder(pixels.to(self.device, torch.float32)))
            mean, logvar = torch.chunk(moments, 2, dim=1)
            std = torch.exp(0.5 * torch.clamp(logvar, -30.0, 20.0))
            scale = float(self.model.scale_factor)
            return LatentDist(mean.float() * scale, std.float() * scale)
        finally:
            if old_dtype != torch.float32:
                vae.to(dtype=old_dtype)

    def encode_prompts(self, prompts: Sequence[PromptTokens], vectors: torch.Tensor | None = None) -> PooledCond:
        self._apply_clip_skip()
        trained = (
            _TrainedVectors("embed-studio", self._as_vec(vectors.to(self.device))) if vectors is not None else None
        )
        n_chunks = max(len(p.chunks) for p in prompts)
        if len(prompts) > 1 and any(p.emphasis for p in prompts):
            # Emphasis restores the mean over the batch it is given; txt2img gives it one prompt.
            parts = [self._encode([p], trained, n_chunks) for p in prompts]
            return PooledCond(torch.cat([c.context for c in parts]), torch.cat([c.pooled for c in parts]))
        return self._encode(prompts, trained, n_chunks)

    def _encode(self, prompts: Sequence[PromptTokens], trained: _TrainedVectors | None, n_chunks: int) -> PooledCond:
        hijack = sd_hijack.model_hijack
        empty = self.text_embedders[0].empty_chunk()
        contexts, pooled = [], None
        try:
            with self.autocast():
                for index in range(n_chunks):
                    tokens, multipliers, fixes = self._chunk_batch(prompts, trained, index, empty)
                    zs = []
                    for embedder in self.text_embedders:
                        hijack.fixes = fixes  # EmbeddingsWithFixes consumes them: set for each encoder
                        zs.append(embedder.process_tokens(tokens, multipliers))
                    if index == 0:
                        pooled = zs[1].pooled  # the WebUI takes the first window's pooled output
                    contexts.append(torch.cat(zs, dim=-1))
        finally:
            hijack.fixes = None
        return PooledCond(torch.hstack(contexts), pooled)

    def attach_hypernetwork(self, layers: HypernetworkLayers | None) -> None:
        if layers is not None:
            raise UserInputError(SDXL_HYPERNETWORK_REFUSAL)
        super().attach_hypernetwork(None)

    def predict(
        self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, cond: Any, sizes: Sequence[SizeCond] | None = None
    ) -> torch.Tensor:
        if sizes is None:
            h, w = (int(d) * self.latent_factor for d in noisy_latents.shape[-2:])
            sizes = [SizeCond((h, w), (0, 0), (h, w))] * noisy_latents.shape[0]
        vector = [cond.pooled]
        for key, field in _SIZE_KEYS:
            values = torch.tensor([getattr(s, field) for s in sizes], dtype=torch.float32, device=self.device)
            vector.append(self.size_embedders[key](values))
        with self.autocast():
            dtype = next(self.model.model.diffusion_model.parameters()).dtype
            c = {"crossattn": cond.context.to(dtype), "vector": torch.cat(vector, dim=1).to(dtype)}
            return self.model.apply_model(noisy_latents.to(dtype), timesteps, c)


class WebUIProvider:
    """The WebUI lends its loaded model: under its GPU lock, with CLIP skip, VAE and hijack state restored."""

    name = "webui"
    needs_model_path = False

    def __init__(self) -> None:
        cmd_opts = shared.cmd_opts
        self.embeddings_dir = Path(cmd_opts.embeddings_dir)
        self.hypernetworks_dir = Path(cmd_opts.hypernetwork_dir)
        self.templates_dir: Path | None = Path(cmd_opts.textual_inversion_templates_dir)
        # The WebUI's Train tab logs to "textual_inversion" beside its data.
        self.log_dir = Path(paths_internal.data_path) / "textual_inversion"
        from embed_studio.webui.host import models_dir

        self.tagger_models_dir = models_dir()  # the Tagger panel's, for preview scoring
        self._busy = threading.Lock()
        self._lock_owner: int | None = None

    @property
    def extra_folders(self) -> tuple[Path, ...]:
        """The folders allowed in Settings, read at each use so a change applies without a restart."""
        from embed_studio.backends.provider import parse_folders
        from embed_studio.webui.settings import ALLOWED_FOLDERS_KEY

        return parse_folders(shared.opts.data.get(ALLOWED_FOLDERS_KEY, ""))

    def model_title(self) -> str:
        info = getattr(shared.sd_model, "sd_checkpoint_info", None)
        return info.title if info is not None else ""

    def describe(self) -> str:
        model = shared.sd_model
        shorthash, _, title = checkpoint_identity(model)
        loaded = sd_vae.loaded_vae_file
        vae = "the checkpoint's own"
        if loaded:
            vae += f" ({Path(loaded).name}, selected for txt2img, is swapped out while training and put back after)"
        return f"Model: {title} [{shorthash or 'no hash'}] · VAE for training: {vae} · CLIP skip {self.default_clip_skip()}"

    def default_clip_skip(self) -> int:
        return int(shared.opts.data.get(CLIP_SKIP_KEY, shared.opts.get_default(CLIP_SKIP_KEY)) or 1)

    def default_size(self, model: str = "") -> int:
        return 1024 if getattr(shared.sd_model, "is_sdxl", False) else 512  # SDXL trains at a 1024x1024 area

    def vae_choices(self) -> list[str]:
        sd_vae.refresh_vae_list()
        return [CHECKPOINT_VAE, *sd_vae.vae_dict]

    def preview_samplers(self) -> list[str]:
        """The WebUI's visible samplers (Settings can hide some), in the form's spelling ('dpmpp_2m_sde')."""
        from modules import sd_samplers

        return [sampler_key(x.name) for x in sd_samplers.visible_samplers()]

    def preview_schedulers(self) -> list[str]:
        """The WebUI's schedule types, as txt2img names them."""
        from modules import sd_schedulers

        return [x.label for x in sd_schedulers.schedulers]

    @contextlib.contextmanager
    def session(self, model: str = "", vae: str = CHECKPOINT_VAE, clip_skip: int = 1) -> Iterator[WebUIBackend]:
        if not self._busy.acquire(blocking=False):
            raise UserInputError("A training run is already using the WebUI's model; cancel it or wait for it to end.")
        try:
            wanted_vae = _vae_file(vae)
            # txt2img, img2img and the API wait on this lock: nothing generates while we train.
            call_queue.queue_lock.acquire()
            self._lock_owner = threading.get_ident()
            try:
                yield from self._session_locked(model, vae, wanted_vae, clip_skip)
            finally:
                self._lock_owner = None
                call_queue.queue_lock.release()
        finally:
            self._busy.release()

    def _session_locked(self, model: str, vae: str, wanted_vae: str | None, clip_skip: int) -> Iterator[WebUIBackend]:
        sd_model = shared.sd_model
        _require_sd(sd_model)
        if model and model not in (sd_model.sd_checkpoint_info.title, sd_model.sd_checkpoint_info.name_for_extra):
            print(f"Embed Studio: training on the loaded checkpoint {sd_model.sd_checkpoint_info.title}, not {model}")
        clip_skip_setting: _SettingOverride | None = None
        saved_vae = sd_vae.loaded_vae_file
        saved_hypernetworks = shared.loaded_hypernetworks
        saved_optimization = sd_hijack.model_hijack.optimization_method
        backend: WebUIBackend | None = None
        try:
            _clear_extra_networks()
            if saved_vae != wanted_vae:
                # The guides' "fried embedding": a VAE other than the checkpoint's own skews the latents.
                sd_vae.reload_vae_weights(sd_model, vae_file=wanted_vae)
            clip_skip_setting = _SettingOverride(CLIP_SKIP_KEY, int(clip_skip))
            kind = WebUIXLBackend if getattr(sd_model, "is_sdxl", False) else WebUIBackend
            backend = kind(int(clip_skip), clip_skip_setting)
            print(
                f"Embed Studio: training on {backend.checkpoint_title} [{backend.checkpoint_hash}] with VAE: "
                f"{backend.vae_label}, CLIP skip {clip_skip}"
                + (f" ({Path(saved_vae).name} is put back afterwards)" if saved_vae != wanted_vae and saved_vae else "")
            )
            yield backend
        finally:
            if backend is not None:
                backend.close()
            if clip_skip_setting is not None:
                clip_skip_setting.restore()
            shared.loaded_hypernetworks = saved_hypernetworks
            if sd_vae.loaded_vae_file != saved_vae:
                sd_vae.reload_vae_weights(shared.sd_model, vae_file=saved_vae)
            if sd_hijack.model_hijack.optimization_method != saved_optimization:
                sd_hijack.model_hijack.apply_optimizations()

    def held_by_current_thread(self) -> bool:
        """Whether the calling thread is inside session() holding the WebUI's GPU lock (a job's own thread)."""
        return self._lock_owner == threading.get_ident()

    def refresh(self, kind: str, path: Path) -> None:
        """Reload the WebUI's embedding or hypernetwork list so `path` is usable without a restart."""
        held = self.held_by_current_thread()
        if not held:
            call_queue.queue_lock.acquire()
        try:
            if kind == "embedding":
                sd_hijack.model_hijack.embedding_db.load_textual_inversion_embeddings(force_reload=True)
                from modules import processing

                # Conditionings cached for a prompt naming this embedding hold its old vectors.
                processing.StableDiffusionProcessing.cached_c = [None, None]
                processing.StableDiffusionProcessing.cached_uc = [None, None]
            elif kind == "hypernetwork":
                shared.reload_hypernetworks()
                # load_hypernetworks() reuses a loaded object of the same name: drop it so the file is read again.
                stale = {Path(path).stem, str(path)}
                shared.loaded_hypernetworks = [
                    h
                    for h in shared.loaded_hypernetworks
                    if getattr(h, "name", None) not in stale and getattr(h, "filename", None) not in stale
                ]
        finally:
            if not held:
                call_queue.queue_lock.release()
