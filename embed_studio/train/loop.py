"""The training loop: cached latents, seeded per-step randomness, checkpoints, previews, resume and cancel."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from embed_studio.backends.base import Backend, auto_precision
from embed_studio.errors import Cancelled, EmbedStudioError
from embed_studio.formats.optim import state_tag
from embed_studio.progress import drawing_stats, stage_stats
from embed_studio.train.config import TrainConfig
from embed_studio.train.create import name_clashes
from embed_studio.train.data import BatchPlan, TrainingSet, derive_seed, prepare_training_set
from embed_studio.train.losses import offset_noise, timestep_bounds, timestep_weights
from embed_studio.train.losslog import LossLog
from embed_studio.train.optimizers import ADAPTIVE, make_optimizer, optimizer_state_on_cpu
from embed_studio.train.previews import save_previews
from embed_studio.train.prompts import PromptOptions, build_prompt, load_template_lines
from embed_studio.train.resume import check_resume
from embed_studio.train.schedule import precompute_rates
from embed_studio.train.targets import load_target

TOKEN_CACHE_SIZE = 4096
# The loss log is rewritten every this many steps (and at saves, previews and the end), so a page's loss
# plot moves during a run instead of only at previews.
LOSS_LOG_EVERY = 10
# Reading a loss back waits for the device to finish everything queued, so on an accelerator the losses stay
# there and are read back every SYNC_EVERY optimizer steps (and before every save, preview and validation). On
# the CPU a read-back costs nothing and the loss log stays current; tests raise CPU_SYNC_EVERY to run the
# accelerator's path on the CPU.
SYNC_EVERY = 16
CPU_SYNC_EVERY = 1


class TrainingDiverged(EmbedStudioError):
    """The loss became NaN/inf; the last good state was saved."""


@dataclass
class TrainResult:
    target: str
    step: int
    initial_step: int
    last_loss: float | None = None
    log_dir: str = ""
    copies: list[str] = field(default_factory=list)
    previews: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stopped: str = "done"  # done, already-trained, schedule-ended
    validation_loss: float | None = None  # the last check's, when validating


def sync_interval(device: torch.device) -> int:
    """Optimizer steps between loss read-backs on `device`."""
    return CPU_SYNC_EVERY if device.type == "cpu" else SYNC_EVERY


def read_back(values: list[torch.Tensor]) -> list[float]:
    """Device scalars to floats in one transfer: the loop's only wait for the device (besides saves)."""
    return torch.stack([v.detach().float().reshape(()) for v in values]).tolist()


def _host_scalar(value: Any) -> bool:
    # AdamW keeps its step counts as CPU scalars even for CUDA parameters: a torch.where on them would bring the
    # device's finiteness flag to the host, the very wait the deferred read-back avoids.
    return isinstance(value, torch.Tensor) and value.device.type == "cpu" and value.numel() == 1


@dataclass
class _Pending:
    """A finished optimizer step whose loss (and parameter norm) is still on the device."""

    step: int
    epoch: int
    loss: torch.Tensor
    norm: torch.Tensor | None  # the trained parameters' norm, for TensorBoard
    lr: float
    images: int
    seconds: float  # host time of the step; the device's share arrives with the read-back
    undo: tuple[list, list]  # the optimizer's host-side state before this step (see _Run._guarded_step)


class _Reporter:
    """Adapts a JobContext (or nothing) for the loop."""

    def __init__(self, ctx: Any | None, log: Callable[[str], None] | None):
        self.ctx = ctx
        self.log = log

    def check_cancelled(self) -> None:
        if self.ctx is not None:
            self.ctx.check_cancelled()

    def progress(self, done: int, total: int, text: str | None, **stats: Any) -> None:
        if self.ctx is not None:
            self.ctx.progress(done, total, text, **stats)

    def text(self, text: str) -> None:
        if self.ctx is not None:
            self.ctx.set_text(text)

    def image(self, path: Any) -> None:
        if self.ctx is not None:
            self.ctx.add_image(str(path))

    def say(self, message: str) -> None:
        if self.log is not None:
            self.log(message)


def _grad_scaler(enabled: bool) -> Any:
    # torch.amp.GradScaler arrived in torch 2.3; the WebUI's torch 2.1 only has the cuda.amp one.
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)


def resolve_precision(config: TrainConfig, backend: Backend) -> str:
    if config.precision != "auto":
        return config.precision
    return auto_precision(backend.device, getattr(backend, "shared_weight_dtype", None))


def train(
    config: TrainConfig, backend: Backend, ctx: Any | None = None, log: Callable[[str], None] | None = None
) -> TrainResult:
    """Train config.target on config.dataset with `backend`; returns what was done.

    Raises Cancelled (after saving the current state) when the job is cancelled, and TrainingDiverged (after
    saving the last good state) when the loss becomes NaN/inf.
    """
    config.validate()
    precision = resolve_precision(config, backend)
    backend.configure(precision, config.half_weights, config.clip_skip, config.gradient_checkpointing)
    target = load_target(config.kind, config.target_path, backend, config.name)
    try:
        return _Run(config, backend, target, precision, _Reporter(ctx, log)).run()
    finally:
        close = getattr(target, "close", None)
        if close is not None:
            close()


class _Run:
    """One training run of a loaded target; every random draw of step s comes from (seed, s)."""

    def __init__(self, config: TrainConfig, backend: Backend, target: Any, precision: str, report: _Reporter):
        self.config, self.backend, self.target, self.precision, self.report = config, backend, target, precision, report
        self.initial_step = self.step = target.initial_step
        self.schedule = config.lr_schedule()
        schedule_end = self.schedule.end_step()
        self.end = config.max_steps if schedule_end is None else min(config.max_steps, schedule_end)
        self.log_dir = config.log_path
        self.result = TrainResult(str(config.target_path), self.step, self.step, log_dir=str(self.log_dir))
        self.meta = {
            "clip_skip": config.clip_skip,
            "model_family": backend.family,
            "prediction_type": backend.prediction_type,
            "seed": config.seed,
            "precision": precision,
        }
        self.token_cache: dict[str, Any] = {}
        self.last_prompt = ""
        self.pending: list[_Pending] = []
        self.sync_every = sync_interval(backend.device)
        self.all_finite: torch.Tensor | None = None  # on the device: every loss of this run so far was finite
        self.images_per_s = 0.0

    # -- setup -----------------------------------------------------------------------------
    def run(self) -> TrainResult:
        config, report = self.config, self.report
        if self.initial_step >= self.end:
            self.result.stopped = "already-trained"
            reason = "max steps" if self.end == config.max_steps else "the end of the learning-rate schedule"
            report.text(
                f"{config.target_path.name} is already at step {self.initial_step}, which reaches {reason} ({self.end})."
            )
            return self.result
        for warning in check_resume(self.target.data, self.initial_step, config.clip_skip, self.backend):
            self._warn(warning)
        set_compiled = getattr(self.backend, "set_compiled", None)
        if set_compiled is not None:
            set_compiled(config.compile_unet)  # also off again after a compiled run on the same loaded model
        elif config.compile_unet:
            self._warn("Compiling the U-Net works on the standalone backend only; this run is not compiled.")
        self.lines = load_template_lines(
            config.template, config.templates_dir or None, require_name=config.kind == "embedding"
        )
        self.options = PromptOptions(
            config.shuffle_tags, config.keep_first_tags, config.tag_dropout, config.escape_filewords,
            config.caption_dropout, config.token_warmup_min, config.token_warmup_step,
        )  # fmt: skip
        self.data = self._cache_latents()
        self.plan = BatchPlan(self.data, config.batch_size, config.repeats, config.seed)
        # Everything per-step that can be computed once is computed here.
        self.rates = precompute_rates(self.schedule, self.initial_step, self.end)
        clip_schedule = config.clip_schedule()
        self.clip_values = precompute_rates(clip_schedule, self.initial_step, self.end) if clip_schedule else None
        acp = self.backend.alphas_cumprod()
        self.n_timesteps = acp.shape[0]
        self.sqrt_acp, self.sqrt_1m_acp = acp.sqrt(), (1 - acp).sqrt()
        self.snr = acp / (1 - acp)
        self.t_low, self.t_high = timestep_bounds(config.min_timestep, config.max_timestep, self.n_timesteps)
        self.lr_scale = 1.0  # lowered when validation loss keeps rising (on_validation_rise = lower_lr)
        self.state_tag = state_tag(config.optimizer)
        self.params = self.target.parameters()
        self.optimizer = self._optimizer()
        self.scaler = _grad_scaler(self.precision == "fp16" and self.backend.device.type == "cuda")
        self.fork_devices = [self.backend.device] if self.backend.device.type == "cuda" else []
        self.log_dir.mkdir(parents=True, exist_ok=True)
        config.save_json(self.log_dir / "config.json")
        self.loss_log = LossLog(self.log_dir / "loss.csv")
        self.loss_log.truncate_after(self.initial_step)
        self.validator = self._validator()
        from embed_studio.train.scoring import make_scorer

        self.scorer = make_scorer(config, self.log_dir, self.initial_step, self._warn)
        self.scalars = None
        if config.tensorboard:
            from embed_studio.train.scalars import Scalars

            self.scalars = Scalars(self.log_dir)
        return self._loop()

    def _cache_latents(self) -> TrainingSet:
        config, report = self.config, self.report
        total = self.end - self.initial_step

        def progress(done: int, of: int, text: str) -> None:
            report.check_cancelled()
            report.progress(0, total, text, **stage_stats("caching latents", done, of))

        report.progress(0, total, None, **stage_stats("caching latents", 0, None))
        train_images, held_back = training_and_validation_images(config)
        common = dict(
            width=config.width, height=config.height, variable_size=config.variable_size,
            bucket_step=config.bucket_step, seed=config.seed, caption_regex=config.caption_regex or None,
            caption_join=config.caption_join, use_alpha_weight=config.use_alpha_weight, mask_dir=mask_folder(config),
            on_progress=progress,
        )  # fmt: skip
        data = prepare_training_set(
            self.backend, config.dataset, latent_sampling=config.latent_sampling, images_only=train_images,
            flip=config.flip_augment, color_jitter=config.color_jitter, **common,
        )  # fmt: skip
        self.validation_data = None
        if held_back:
            report.text(f"Caching latents of {len(held_back)} validation image(s)…")
            folder = config.validation_dir or config.dataset
            self.validation_data = prepare_training_set(
                self.backend, folder, latent_sampling="deterministic", images_only=held_back, **common
            )
        if not config.color_jitter:  # jittered images are encoded every step: the VAE stays
            self.backend.release_image_encoder()
        warnings = [f"skipped {s}" for s in data.skipped]
        clashes = name_clashes(config.name, data.captions())
        if clashes:
            warnings.append(
                f"The name {config.name!r} is already a tag in {clashes} caption(s): prompts cannot tell the two "
                "apart. Rename the embedding or remove that tag."
            )
        for w in warnings:
            self._warn(w)
        return data

    def _optimizer(self) -> torch.optim.Optimizer:
        from embed_studio.formats.optim import load_optimizer_state

        config = self.config
        weight_decay = self.target.default_weight_decay if config.weight_decay < 0 else config.weight_decay
        # Only the target's own parameters: weight decay never reaches the model's frozen token table or weights.
        optimizer = make_optimizer(
            config.optimizer, self.params, lr=self.rates[0] or 0.0, weight_decay=weight_decay,
            betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_eps,
        )  # fmt: skip
        if config.optimizer in ADAPTIVE and max((r or 0.0) for r in self.rates) < 0.1:
            self._warn(
                f"{config.optimizer} finds its own step size and expects a learning rate of about 1; "
                f"{self.rates[0]:g} makes it learn very slowly."
            )
        saved = load_optimizer_state(config.target_path, self.target.resume_hash() + self.state_tag)
        if saved is not None:
            optimizer.load_state_dict(saved)
            self.report.say(f"resuming {config.target_path.name} at step {self.initial_step} with its optimizer state")
        elif self.initial_step:
            self._warn("No matching optimizer state (.optim) beside the file: the optimizer starts fresh.")
        return optimizer

    def _warn(self, message: str) -> None:
        self.result.warnings.append(message)
        self.report.say(f"warning: {message}")

    # -- the loop --------------------------------------------------------------------------
    def _loop(self) -> TrainResult:
        config, report = self.config, self.report
        report.progress(
            0, self.end - self.initial_step, f"{config.name}: training from step {self.initial_step}", label="step",
            **stage_stats(None),
        )  # fmt: skip
        lr = 0.0
        try:
            while self.step < self.end:
                report.check_cancelled()
                lr = self.rates[self.step - self.initial_step]
                if lr is None:
                    self.result.stopped = "schedule-ended"
                    break
                lr *= self.lr_scale
                started = time.perf_counter()
                loss, images, undo = self._train_step(lr)
                self.step += 1
                epoch = self.plan.epoch_of(self.step * config.grad_accum - 1)
                norm = None
                if self.scalars is not None:
                    norm = torch.stack([p.detach().float().norm() for p in self.params]).norm()
                self.pending.append(
                    _Pending(self.step, epoch, loss, norm, lr, images, time.perf_counter() - started, undo)
                )
                if len(self.pending) >= self.sync_every or self._read_back_due():
                    self._read_back()
                if self.step % LOSS_LOG_EVERY == 0:
                    self.loss_log.flush()
                report.progress(
                    self.step - self.initial_step, self.end - self.initial_step,
                    # The counts are this run's (for it/s and ETA); a resumed file's own step is named here.
                    f"{config.name} epoch {epoch}, lr {lr:.3g}"
                    + (f", file at step {self.step}/{self.end}" if self.initial_step else ""),
                    # Between read-backs the last loss read (None before the first).
                    loss=self.result.last_loss, lr=lr, epoch=epoch, images_per_s=round(self.images_per_s, 3),
                    label="step", prompt=self.last_prompt,
                )  # fmt: skip
                self._checkpoint()
                self._validate()
        except Cancelled:
            self._save_main()
            self.result.step = self.step
            raise
        self._save_main()
        self.result.step = self.step
        if self.step >= self.end and self.end < config.max_steps:
            self.result.stopped = "schedule-ended"
        return self.result

    def _train_step(self, lr: float) -> tuple[torch.Tensor, int, tuple[list, list]]:
        """One optimizer step over grad_accum micro-batches; returns (the loss, still on the device; images seen;
        the optimizer's host-side state before the step)."""
        config = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total: torch.Tensor | None = None
        images = 0
        # Dropout (hypernetworks) draws from torch's global RNG: fork it and seed it from (seed, step).
        with torch.random.fork_rng(devices=self.fork_devices):
            torch.manual_seed(derive_seed(config.seed, "dropout", self.step))
            for micro in range(config.grad_accum):
                loss, n = self._micro_batch(self.step * config.grad_accum + micro)
                self.scaler.scale(loss).backward()
                total = loss.detach() if total is None else total + loss.detach()
                images += n
        if self.clip_values is not None:
            self.scaler.unscale_(self.optimizer)
            limit = self.clip_values[self.step - self.initial_step]
            if limit is not None:
                if config.clip_grad_mode == "value":
                    torch.nn.utils.clip_grad_value_(self.params, limit)
                else:
                    torch.nn.utils.clip_grad_norm_(self.params, limit, norm_type=config.clip_grad_norm_type)
        assert total is not None  # grad_accum >= 1 (validated)
        undo = self._guarded_step(total)
        self.optimizer.zero_grad(set_to_none=True)
        return total, images, undo

    # -- the NaN guard without a read-back per step -----------------------------------------
    def _guarded_step(self, loss: torch.Tensor) -> tuple[list, list]:
        """The optimizer step, undone on the device when this or any earlier loss of the run was NaN/inf.

        So the parameters and the optimizer's device state stay those of the last good step until _read_back
        finds the bad loss; it then restores the host-side state returned here (AdamW's step counts, adaptive
        optimizers' group values), saves and stops."""
        ok = torch.isfinite(loss)
        self.all_finite = ok = ok if self.all_finite is None else ok & self.all_finite
        host_state, saved = [], []
        for p in self.params:
            state = self.optimizer.state.get(p)
            host_state.append(None if not state else {k: v.clone() for k, v in state.items() if _host_scalar(v)})
            kept = {} if not state else {
                k: v.clone() for k, v in state.items() if isinstance(v, torch.Tensor) and not _host_scalar(v)
            }  # fmt: skip
            saved.append((p.detach().clone(), kept))
        groups = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        with torch.no_grad():
            for p, (old, kept) in zip(self.params, saved, strict=True):
                p.copy_(torch.where(ok, p, old))
                for key, value in self.optimizer.state.get(p, {}).items():
                    if isinstance(value, torch.Tensor) and not _host_scalar(value):
                        before = kept.get(key)  # none: this very step made it, from zeros (AdamW's moments)
                        value.copy_(torch.where(ok, value, before if before is not None else torch.zeros_like(value)))
        return host_state, groups

    def _read_back_due(self) -> bool:
        """Whether this step saves, previews, validates or ends: those need its loss (and a known-good state)."""
        step, config = self.step, self.config
        return (
            step >= self.end
            or bool(config.save_every and step % config.save_every == 0)
            or bool(config.preview_every and step % config.preview_every == 0)
            or (self.validator is not None and step % config.validation_every == 0)
            or self._cycle_ends(step)
        )

    def _read_back(self) -> None:
        """The pending losses into the loss log (one wait for the device); on a NaN/inf, back to the last good
        step, saved, and TrainingDiverged."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        waited = time.perf_counter()
        values = read_back([e.loss for e in pending] + [e.norm for e in pending if e.norm is not None])
        losses, norms = values[: len(pending)], iter(values[len(pending) :])
        # The wait belongs to the steps it waited for (their host time is counted already).
        seconds = sum(e.seconds for e in pending) + time.perf_counter() - waited
        self.images_per_s = sum(e.images for e in pending) / seconds if seconds > 0 else 0.0
        for entry, value in zip(pending, losses, strict=True):
            if not math.isfinite(value):
                self._diverged(entry, value)
            self.loss_log.add(entry.step, entry.epoch, value, entry.lr, self.images_per_s)
            if self.scalars is not None:
                self.scalars.add(entry.step, loss=value, lr=entry.lr, param_norm=next(norms))
            self.result.last_loss = value

    def _diverged(self, entry: _Pending, value: float) -> None:
        host_state, groups = entry.undo
        for p, saved in zip(self.params, host_state, strict=True):
            if saved is None:
                self.optimizer.state.pop(p, None)  # the bad step made this state: there was none before it
            else:
                self.optimizer.state[p].update(saved)
        for group, before in zip(self.optimizer.param_groups, groups, strict=True):
            group.update(before)
        self.step = self.result.step = entry.step - 1
        self.optimizer.zero_grad(set_to_none=True)
        self._save_main()
        raise TrainingDiverged(
            f"The loss became {value} at step {entry.step} (learning rate {entry.lr:g}), so training stopped. "
            f"The last good state (step {self.step}) is saved in {self.config.target_path}. Lower the learning "
            "rate, turn on gradient clipping, or use fp32/bf16 instead of fp16, then resume."
        )

    def _micro_batch(self, position: int) -> tuple[torch.Tensor, int]:
        """The (already divided by grad_accum) diffusion loss of micro-batch number `position`."""
        config, backend, data = self.config, self.backend, self.data
        bucket, indices = self.plan.batch(position)
        generator = torch.Generator(device=backend.device).manual_seed(derive_seed(config.seed, "noise", position))
        rng = random.Random(derive_seed(config.seed, "prompt", position))
        captions = [data.buckets[bucket].captions[i] for i in indices]
        texts = [build_prompt(rng.choice(self.lines), c, config.name, self.options, rng, self.step) for c in captions]
        self.last_prompt = texts[0]
        # Augmentations draw from their own seeds, so turning one on leaves every other draw of the run as it was.
        flips = None
        if config.flip_augment:
            flip_rng = random.Random(derive_seed(config.seed, "flip", position))
            flips = [flip_rng.random() < 0.5 for _ in indices]
        jitter = None
        if config.color_jitter:
            jitter = torch.Generator().manual_seed(derive_seed(config.seed, "jitter", position))
        latents = data.latents(bucket, indices, generator, flips, jitter)
        noise = torch.randn(latents.shape, generator=generator, device=latents.device)
        t = torch.randint(self.t_low, self.t_high, (latents.shape[0],), generator=generator, device=latents.device)
        noise = offset_noise(noise, config.noise_offset, generator)
        a = self.sqrt_acp[t].view(-1, 1, 1, 1)
        s = self.sqrt_1m_acp[t].view(-1, 1, 1, 1)
        noisy = a * latents + s * noise
        wanted = noise if backend.prediction_type == "epsilon" else a * noise - s * latents
        cond = self.target.condition(texts, [self._tokens(x) for x in texts])
        prediction = backend.predict(noisy, t, cond, data.size_conds(bucket, indices))
        error = (prediction.float() - wanted.float()) ** 2
        weight = data.weights(bucket, indices, flips)
        if weight is not None:
            error = error * weight
        per_timestep = timestep_weights(
            self.snr[t].float(), backend.prediction_type, min_snr_gamma=config.min_snr_gamma,
            debiased=config.debiased_loss, v_like_eps=config.v_pred_like_eps_loss,
        )  # fmt: skip
        if per_timestep is None:
            loss = error.mean()
        else:
            loss = (error.mean(dim=(1, 2, 3)) * per_timestep.to(error.device)).mean()
        return loss / config.grad_accum, latents.shape[0]

    def _tokens(self, text: str) -> Any:
        tokens = self.token_cache.get(text)
        if tokens is None:
            if len(self.token_cache) >= TOKEN_CACHE_SIZE:
                self.token_cache.clear()
            tokens = self.token_cache[text] = self.target.tokenize(text)
        return tokens

    # -- outputs ---------------------------------------------------------------------------
    def _save(self, path: Any, name: str | None = None, safetensors: Any = None) -> Any:
        """The target (and its optimizer state) into `path`; with save_safetensors (embeddings) also a .safetensors
        there, or at `safetensors`."""
        data = self.target.save(
            path, self.step, self.optimizer.state_dict(), self.meta, name=name, state_tag=self.state_tag
        )
        if self.config.save_safetensors and self.config.kind == "embedding":
            from embed_studio.formats.embedding import save_embedding

            save_embedding(data, safetensors or path.with_suffix(".safetensors"))
        return data

    def _save_main(self) -> None:
        self._read_back()  # a NaN among the pending steps saves the last good state instead, and stops
        # The log before the file: a kill between the two leaves log rows past the file's step, which a resume
        # cuts off; the other order left a permanent gap (the file resumed past rows never written).
        self.loss_log.flush()
        if getattr(self, "scalars", None) is not None:
            self.scalars.flush()
        # The main file's .safetensors goes to the log folder: beside the .pt, the WebUI would load one name twice.
        self._save(self.config.target_path, safetensors=self.log_dir / f"{self.config.target_path.stem}.safetensors")

    def _checkpoint(self) -> None:
        """Every save_every steps a named copy (and the main file); every preview_every steps previews."""
        config, step = self.config, self.step
        snapshot = None
        cycle_end = self._cycle_ends(step)
        if ((config.save_every and step % config.save_every == 0) or cycle_end) and step < self.end:
            copies_dir = self.log_dir / ("embeddings" if config.kind == "embedding" else "hypernetworks")
            copies_dir.mkdir(parents=True, exist_ok=True)
            copy = copies_dir / f"{config.name}-{step}{config.target_path.suffix}"  # SDXL files are .safetensors
            snapshot = self._save(copy, name=f"{config.name}-{step}")
            self.result.copies.append(str(copy))
            self._save_main()
        if (config.preview_every and step % config.preview_every == 0) or cycle_end:
            try:
                snapshot = snapshot or self.target.snapshot(step, self.meta)
                done, total = step - self.initial_step, self.end - self.initial_step

                def drawing(n: int, of: int) -> None:
                    self.report.progress(
                        done, total, f"step {step}: drawing previews…",
                        preview_prompt=config.preview_prompt or self.last_prompt, preview_step=step,
                        **drawing_stats(n, of),
                    )  # fmt: skip

                with optimizer_state_on_cpu(self.optimizer):  # room for the preview's decode on a small card
                    previews = save_previews(
                        config, self.target, step, self.last_prompt, self.log_dir, snapshot, drawing
                    )
                for path in previews:
                    self.result.previews.append(str(path))
                    self.report.image(path)
            except Exception as e:  # a failed preview must not end hours of training
                self._warn(f"preview at step {step} failed: {type(e).__name__}: {e}")
            else:
                self._score(step)
            finally:
                self.report.progress(
                    step - self.initial_step, self.end - self.initial_step, f"step {step}: previews drawn",
                    **drawing_stats(None),
                )  # fmt: skip
            self.loss_log.flush()

    def _score(self, step: int) -> None:
        """With preview scoring: tag this step's previews and log how many character tags they show."""
        if getattr(self, "scorer", None) is None:
            return
        from embed_studio.train.previews import preview_images

        try:
            row = self.scorer.score(step, preview_images(self.config, self.log_dir, step))
        except Exception as e:  # like a failed preview, a failed score must not end the run
            self._warn(f"scoring the previews of step {step} failed: {type(e).__name__}: {e}")
            return
        self.report.say(self.scorer.describe(row))

    def _cycle_ends(self, step: int) -> bool:
        """With save_each_cycle on a cosine schedule: `step` completes a cycle (the rate is at its lowest)."""
        if not self.config.save_each_cycle or self.config.lr_scheduler != "cosine":
            return False
        cycle, position, _ = self.schedule.locate(step)
        return cycle > 0 and position == 0

    # -- validation ------------------------------------------------------------------------
    def _validator(self) -> Any:
        from embed_studio.train.validation import ValidationLog, ValidationSet, ValidationTracker

        if self.validation_data is None:
            return None
        config = self.config
        # The first template line with the whole caption in order: the same prompt at every check.
        plain = PromptOptions(escape_brackets=config.escape_filewords)
        rng = random.Random(0)
        prompts = [
            [build_prompt(self.lines[0], c, config.name, plain, rng) for c in b.captions]
            for b in self.validation_data.buckets
        ]
        checks = ValidationSet(self.validation_data, prompts, config.seed, self.t_low, self.t_high)
        self.tracker = ValidationTracker(config.validation_patience)
        self.validation_log = ValidationLog(self.log_dir / "validation.csv", self.initial_step)
        self.validation_log.restore(self.tracker)
        self.best_state: tuple[list[torch.Tensor], dict] | None = None
        self.report.say(f"validating on {len(checks)} held-back image(s) every {config.validation_every} steps")
        return checks

    def _validate(self) -> None:
        """Every validation_every steps: the validation loss, the best copy, and the action on a rising loss."""
        import copy

        config = self.config
        if self.validator is None or self.step % config.validation_every:
            return
        self.target.set_training(False)
        try:
            loss = self.validator.loss(
                self.backend.predict,
                lambda texts: self.target.condition(texts, [self._tokens(x) for x in texts]),
                self.sqrt_acp, self.sqrt_1m_acp, self.backend.prediction_type == "v_prediction",
            )  # fmt: skip
        finally:
            self.target.set_training(True)
        self.result.validation_loss = loss
        improved, act = self.tracker.update(self.step, loss)
        self.validation_log.add(self.step, loss, self.tracker.best_step)
        if self.scalars is not None:
            self.scalars.add(self.step, validation_loss=loss)
        self.report.say(f"step {self.step}: validation loss {loss:.5f} (best {self.tracker.best:.5f})")
        if improved:
            self._save(self.log_dir / f"{config.name}-best.pt", name=f"{config.name}-best")
            self.best_state = (
                [p.detach().clone() for p in self.params],
                copy.deepcopy(self.optimizer.state_dict()),
            )
        if not act or config.on_validation_rise == "none":
            return
        rose = f"the validation loss rose {config.validation_patience} check(s) in a row"
        if config.on_validation_rise == "lower_lr":
            self.lr_scale *= config.validation_lr_factor
            self._warn(f"step {self.step}: {rose}; the learning rate is now ×{self.lr_scale:g} of the schedule's")
        elif self.best_state is None:
            self._warn(f"step {self.step}: {rose}, but this run has no best copy in memory to roll back to")
        else:
            params, optimizer_state = self.best_state
            with torch.no_grad():
                for p, best in zip(self.params, params, strict=True):
                    p.copy_(best)
            self.optimizer.load_state_dict(copy.deepcopy(optimizer_state))
            self._warn(f"step {self.step}: {rose}; rolled back to the best state (step {self.tracker.best_step})")


def mask_folder(config: TrainConfig) -> Any:
    """The loss-mask folder (relative to the dataset), or None; a missing folder is the user's to fix."""
    from pathlib import Path

    from embed_studio.dataset.folder import require_folder

    if not config.loss_mask_dir:
        return None
    folder = Path(config.loss_mask_dir).expanduser()
    return require_folder(folder if folder.is_absolute() else Path(config.dataset) / folder)


def training_and_validation_images(config: TrainConfig) -> tuple[Any, list]:
    """(training images or None for all, validation images) per validation_dir / validation_split."""
    from embed_studio.dataset.folder import list_images
    from embed_studio.errors import DatasetError
    from embed_studio.train.validation import split_images

    if config.validation_dir:
        held = list_images(config.validation_dir)
        if not held:
            raise DatasetError(f"Validation folder {config.validation_dir} has no images.")
        return None, held
    if config.validation_split > 0:
        images, held = split_images(list_images(config.dataset), config.validation_split, config.seed)
        if not held:
            raise DatasetError("A validation share needs at least two images in the dataset.")
        return images, held
    return None, []
