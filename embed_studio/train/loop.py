"""The training loop: cached latents, seeded per-step randomness, checkpoints, previews, resume and cancel."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from embed_studio.backends.base import Backend
from embed_studio.errors import Cancelled, EmbedStudioError
from embed_studio.train.config import TrainConfig
from embed_studio.train.create import name_clashes
from embed_studio.train.data import BatchPlan, TrainingSet, derive_seed, prepare_training_set
from embed_studio.train.losslog import LossLog
from embed_studio.train.previews import save_previews
from embed_studio.train.prompts import PromptOptions, build_prompt, load_template_lines
from embed_studio.train.resume import check_resume
from embed_studio.train.schedule import precompute_rates
from embed_studio.train.targets import load_target

TOKEN_CACHE_SIZE = 4096
SYNC_EVERY = 16  # optimizer steps between reading the losses back from an accelerator


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


def sync_interval(device: torch.device) -> int:
    """Steps between loss read-backs. Reading a loss waits for the device to finish all queued work, so on an
    accelerator it happens every SYNC_EVERY steps (and before every save); on the CPU it is free, so every step."""
    return 1 if device.type == "cpu" else SYNC_EVERY


def _host_scalar(value: Any) -> bool:
    # AdamW keeps its step counts as CPU scalars: torch.where on them would need the NaN flag on the host.
    return isinstance(value, torch.Tensor) and value.device.type == "cpu" and value.numel() == 1


@dataclass
class _Pending:
    """A finished optimizer step whose loss is still on the device."""

    step: int
    epoch: int
    loss: torch.Tensor
    lr: float
    images: int
    seconds: float  # host time of the step (the device's share comes with the read-back)
    host_state: list  # the optimizer's CPU-side scalars (step counts) before this step, for a rollback


class _Reporter:
    """Adapts a JobContext (or nothing) for the loop."""

    def __init__(self, ctx: Any | None, log: Callable[[str], None] | None):
        self.ctx = ctx
        self.log = log

    def check_cancelled(self) -> None:
        if self.ctx is not None:
            self.ctx.check_cancelled()

    def progress(self, done: int, total: int, text: str, **stats: Any) -> None:
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
    return "fp16" if backend.device.type == "cuda" else "fp32"


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
        self.all_finite: torch.Tensor | None = None  # on the device: every loss so far was finite
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
        self.lines = load_template_lines(
            config.template, config.templates_dir or None, require_name=config.kind == "embedding"
        )
        self.options = PromptOptions(
            config.shuffle_tags, config.keep_first_tags, config.tag_dropout, config.escape_filewords
        )
        self.data = self._cache_latents()
        self.plan = BatchPlan(self.data, config.batch_size, config.repeats, config.seed)
        # Everything per-step that can be computed once is computed here.
        self.rates = precompute_rates(self.schedule, self.initial_step, self.end)
        clip_schedule = config.clip_schedule()
        self.clip_values = precompute_rates(clip_schedule, self.initial_step, self.end) if clip_schedule else None
        acp = self.backend.alphas_cumprod()
        self.n_timesteps = acp.shape[0]
        self.sqrt_acp, self.sqrt_1m_acp = acp.sqrt(), (1 - acp).sqrt()
        self.params = self.target.parameters()
        self.optimizer = self._optimizer()
        self.scaler = _grad_scaler(self.precision == "fp16" and self.backend.device.type == "cuda")
        self.fork_devices = [self.backend.device] if self.backend.device.type == "cuda" else []
        self.log_dir.mkdir(parents=True, exist_ok=True)
        config.save_json(self.log_dir / "config.json")
        self.loss_log = LossLog(self.log_dir / "loss.csv")
        self.loss_log.truncate_after(self.initial_step)
        return self._loop()

    def _cache_latents(self) -> TrainingSet:
        config, report = self.config, self.report
        total = self.end - self.initial_step

        def progress(done: int, of: int, text: str) -> None:
            report.check_cancelled()
            report.progress(0, total, text)

        report.text("Caching latents…")
        data = prepare_training_set(
            self.backend, config.dataset, width=config.width, height=config.height,
            variable_size=config.variable_size, bucket_step=config.bucket_step,
            latent_sampling=config.latent_sampling, seed=config.seed, caption_regex=config.caption_regex or None,
            caption_join=config.caption_join, use_alpha_weight=config.use_alpha_weight, on_progress=progress,
        )  # fmt: skip
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
        optimizer = torch.optim.AdamW(
            self.params, lr=self.rates[0] or 0.0, weight_decay=weight_decay,
            betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_eps,
        )  # fmt: skip
        saved = load_optimizer_state(config.target_path, self.target.resume_hash())
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
            0, self.end - self.initial_step, f"{config.name}: training from step {self.initial_step}", label="step"
        )
        lr = 0.0
        try:
            while self.step < self.end:
                report.check_cancelled()
                lr = self.rates[self.step - self.initial_step]
                if lr is None:
                    self.result.stopped = "schedule-ended"
                    break
                started = time.perf_counter()
                loss, images, host_state = self._train_step(lr)
                self.step += 1
                epoch = self.plan.epoch_of(self.step * config.grad_accum - 1)
                self.pending.append(
                    _Pending(self.step, epoch, loss, lr, images, time.perf_counter() - started, host_state)
                )
                if len(self.pending) >= self.sync_every or self._save_due():
                    self._flush()
                report.progress(
                    self.step - self.initial_step, self.end - self.initial_step,
                    # The counts are this run's (for it/s and ETA); a resumed file's own step is named here.
                    f"{config.name} epoch {epoch}, lr {lr:.3g}"
                    + (f", file at step {self.step}/{self.end}" if self.initial_step else ""),
                    loss=self.result.last_loss, lr=lr, epoch=epoch, images_per_s=round(self.images_per_s, 3),
                    label="step",
                )  # fmt: skip
                self._checkpoint()
        except Cancelled:
            self._save_main()
            self.result.step = self.step
            raise
        self._save_main()
        self.result.step = self.step
        if self.step >= self.end and self.end < config.max_steps:
            self.result.stopped = "schedule-ended"
        return self.result

    def _train_step(self, lr: float) -> tuple[torch.Tensor, int, list]:
        """One optimizer step over grad_accum micro-batches; returns (loss on the device, images seen, the
        optimizer's host state before the step)."""
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
        host_state = self._guarded_step(total)
        self.optimizer.zero_grad(set_to_none=True)
        return total, images, host_state

    # -- the NaN guard without a read-back per step -------------------------------------------
    def _guarded_step(self, loss: torch.Tensor) -> list:
        """The optimizer step, undone on the device when this or any earlier loss was NaN/inf.

        So the parameters and moments stay those of the last good step until _flush reads the losses back,
        rolls back the host-side step counts and stops. Returns the host state for that rollback."""
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
        self.scaler.step(self.optimizer)
        self.scaler.update()
        with torch.no_grad():
            for p, (old, kept) in zip(self.params, saved, strict=True):
                p.copy_(torch.where(ok, p, old))
                for key, value in self.optimizer.state.get(p, {}).items():
                    if isinstance(value, torch.Tensor) and not _host_scalar(value):
                        # A state made by this very step started from zeros (AdamW's moments do).
                        before = kept.get(key)
                        value.copy_(torch.where(ok, value, before if before is not None else torch.zeros_like(value)))
        return host_state

    def _save_due(self) -> bool:
        step, config = self.step, self.config
        return (
            step >= self.end
            or bool(config.save_every and step % config.save_every == 0)
            or bool(config.preview_every and step % config.preview_every == 0)
        )

    def _flush(self) -> None:
        """Read the pending losses back (one wait for the device) into the loss log; on a NaN/inf, roll back to
        the last good step, save it and raise TrainingDiverged."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        waited = time.perf_counter()
        values = torch.stack([entry.loss.float() for entry in pending]).tolist()
        # The wait belongs to the steps it waited for (their host time is counted already).
        seconds = sum(entry.seconds for entry in pending) + time.perf_counter() - waited
        self.images_per_s = sum(entry.images for entry in pending) / seconds if seconds > 0 else 0.0
        for entry, value in zip(pending, values, strict=True):
            if not math.isfinite(value):
                self._diverged(entry, value)
            self.loss_log.add(entry.step, entry.epoch, value, entry.lr, round(self.images_per_s, 3))
            self.result.last_loss = value

    def _diverged(self, entry: _Pending, value: float) -> None:
        for p, saved in zip(self.params, entry.host_state, strict=True):
            if saved is None:
                self.optimizer.state.pop(p, None)  # the state was made by the bad step: none before it
            else:
                self.optimizer.state[p].update(saved)
        self.step = entry.step - 1
        self.optimizer.zero_grad(set_to_none=True)
        self._save_main()
        raise TrainingDiverged(
            f"The loss became {value} at step {entry.step} (learning rate {entry.lr:g}), so training stopped. "
            f"The last good state (step {self.step}) is saved in {self.config.target_path}. Lower the learning rate, "
            "turn on gradient clipping, or use fp32/bf16 instead of fp16, then resume."
        )

    def _micro_batch(self, position: int) -> tuple[torch.Tensor, int]:
        """The (already divided by grad_accum) diffusion loss of micro-batch number `position`."""
        config, backend, data = self.config, self.backend, self.data
        bucket, indices = self.plan.batch(position)
        generator = torch.Generator(device=backend.device).manual_seed(derive_seed(config.seed, "noise", position))
        rng = random.Random(derive_seed(config.seed, "prompt", position))
        captions = [data.buckets[bucket].captions[i] for i in indices]
        texts = [build_prompt(rng.choice(self.lines), c, config.name, self.options, rng) for c in captions]
        self.last_prompt = texts[0]
        latents = data.latents(bucket, indices, generator)
        noise = torch.randn(latents.shape, generator=generator, device=latents.device)
        t = torch.randint(0, self.n_timesteps, (latents.shape[0],), generator=generator, device=latents.device)
        a = self.sqrt_acp[t].view(-1, 1, 1, 1)
        s = self.sqrt_1m_acp[t].view(-1, 1, 1, 1)
        noisy = a * latents + s * noise
        wanted = noise if backend.prediction_type == "epsilon" else a * noise - s * latents
        cond = self.target.condition(texts, [self._tokens(x) for x in texts])
        error = (backend.predict(noisy, t, cond).float() - wanted.float()) ** 2
        weight = data.weights(bucket, indices)
        loss = error.mean() if weight is None else (error * weight).mean()
        return loss / config.grad_accum, latents.shape[0]

    def _tokens(self, text: str) -> Any:
        tokens = self.token_cache.get(text)
        if tokens is None:
            if len(self.token_cache) >= TOKEN_CACHE_SIZE:
                self.token_cache.clear()
            tokens = self.token_cache[text] = self.target.tokenize(text)
        return tokens

    # -- outputs ---------------------------------------------------------------------------
    def _save_main(self) -> None:
        self._flush()
        self.target.save(self.config.target_path, self.step, self.optimizer.state_dict(), self.meta)
        self.loss_log.flush()

    def _checkpoint(self) -> None:
        """Every save_every steps a named copy (and the main file); every preview_every steps previews."""
        config, step = self.config, self.step
        snapshot = None
        if config.save_every and step % config.save_every == 0 and step < self.end:
            copies_dir = self.log_dir / ("embeddings" if config.kind == "embedding" else "hypernetworks")
            copies_dir.mkdir(parents=True, exist_ok=True)
            copy = copies_dir / f"{config.name}-{step}.pt"
            snapshot = self.target.save(
                copy, step, self.optimizer.state_dict(), self.meta, name=f"{config.name}-{step}"
            )
            self.result.copies.append(str(copy))
            self._save_main()
        if config.preview_every and step % config.preview_every == 0:
            try:
                snapshot = snapshot or self.target.snapshot(step, self.meta)
                for path in save_previews(config, self.target, step, self.last_prompt, self.log_dir, snapshot):
                    self.result.previews.append(str(path))
                    self.report.image(path)
            except Exception as e:  # a failed preview must not end hours of training
                self._warn(f"preview at step {step} failed: {type(e).__name__}: {e}")
            self.loss_log.flush()
