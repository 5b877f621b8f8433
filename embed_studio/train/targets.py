"""What is being trained: an embedding's vectors or a hypernetwork's modules, with how each saves and conditions."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from embed_studio.backends.base import Backend, PreviewRequest, PromptTokens
from embed_studio.errors import FileFormatError
from embed_studio.train.hypernetwork_modules import build_modules, modules_state, trainable_parameters

COND_CACHE_SIZE = 256  # encoded prompts kept for hypernetwork training (the text encoder is frozen there)


def _cpu_state(obj: Any) -> Any:
    """An optimizer state dict with every tensor on the CPU (what goes into a .optim file)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _cpu_state(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_cpu_state(v) for v in obj]
    return obj


class EmbeddingTarget:
    kind = "embedding"
    default_weight_decay = 0.0  # the WebUI trains embeddings with AdamW(weight_decay=0)

    def __init__(self, path: Path, backend: Backend, trigger: str):
        from embed_studio.formats.embedding import load_embedding

        self.path = path
        self.data = load_embedding(path)
        if self.data.dim != backend.token_dim:
            raise FileFormatError(
                f"{path.name} has {self.data.dim}-wide vectors but this model uses {backend.token_dim}: it was made for "
                "another model family (SD1 is 768, SD2 1024, SDXL 768 + 1280). Create a new embedding for this model."
            )
        if self.data.n_vectors > 75:
            raise FileFormatError(
                f"{path.name} has {self.data.n_vectors} vectors; one prompt window holds 75. Use a smaller embedding."
            )
        self.backend = backend
        self.trigger = trigger
        self.n_vectors = self.data.n_vectors
        self.vectors = self.data.vectors.detach().to(backend.device, torch.float32).clone().requires_grad_(True)
        self.initial_step = int(self.data.step or 0)

    def parameters(self) -> list[torch.Tensor]:
        return [self.vectors]

    def resume_hash(self) -> str:
        return self.data.checksum()

    def tokenize(self, text: str) -> PromptTokens:
        return self.backend.tokenize(text, self.trigger, self.n_vectors)

    def condition(self, texts: Sequence[str], tokens: Sequence[PromptTokens]) -> torch.Tensor:
        return self.backend.encode_prompts(tokens, self.vectors)

    def set_training(self, training: bool) -> None:
        pass

    def snapshot(self, step: int, meta: dict) -> Any:
        from embed_studio.formats.embedding import EmbeddingData

        extra = dict(self.data.extra)
        extra["embed_studio"] = {**dict(extra.get("embed_studio") or {}), **meta}
        return EmbeddingData(
            name=self.data.name,
            vectors=self.vectors.detach().float().cpu().clone(),
            step=step,
            sd_checkpoint=self.backend.checkpoint_hash or self.data.sd_checkpoint,
            sd_checkpoint_name=self.backend.checkpoint_name or self.data.sd_checkpoint_name,
            extra=extra,
        )

    def save(
        self, path: Path, step: int, optimizer_state: dict, meta: dict, name: str | None = None, state_tag: str = ""
    ) -> Any:
        from embed_studio.formats.embedding import save_embedding
        from embed_studio.formats.optim import save_optimizer_state

        data = self.snapshot(step, meta)
        if name:
            data.name = name
        save_embedding(data, path)
        save_optimizer_state(path, _cpu_state(optimizer_state), data.checksum() + state_tag)
        return data

    def preview(self, request: PreviewRequest) -> Any:
        return self.backend.render_preview(request, self.trigger, self.vectors.detach())


class HypernetworkTarget:
    kind = "hypernetwork"
    default_weight_decay = 0.01  # the WebUI builds AdamW with its defaults for hypernetworks

    def __init__(self, path: Path, backend: Backend, trigger: str):
        from embed_studio.formats.hypernetwork import load_hypernetwork

        self.path = path
        self.data = load_hypernetwork(path)
        self.backend = backend
        self.trigger = trigger
        self.modules = build_modules(self.data)
        for pair in self.modules.values():
            for m in pair:
                m.to(backend.device, torch.float32)
        unused = sorted(set(self.modules) - set(backend.context_sizes))
        if len(unused) == len(self.modules):
            raise FileFormatError(
                f"{path.name} has modules for widths {sorted(self.modules)} but this model's attention uses "
                f"{list(backend.context_sizes)}: it cannot affect this model. Create one with matching sizes."
            )
        self.initial_step = int(self.data.step or 0)
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._empty: torch.Tensor | None = None
        backend.attach_hypernetwork(self.modules)
        self.set_training(True)

    def parameters(self) -> list[torch.Tensor]:
        return trainable_parameters(self.modules)

    def resume_hash(self) -> str:
        from embed_studio.formats.hypernetwork import file_shorthash

        return file_shorthash(self.path)

    def tokenize(self, text: str) -> PromptTokens:
        # The name is plain text for a hypernetwork (it only means something if an embedding has that name).
        return self.backend.tokenize(text)

    def _encode_one(self, tokens: PromptTokens) -> torch.Tensor:
        with torch.no_grad():
            return self.backend.encode_prompts([tokens])[0]

    def condition(self, texts: Sequence[str], tokens: Sequence[PromptTokens]) -> torch.Tensor:
        conds = []
        for text, tok in zip(texts, tokens, strict=True):
            cond = self._cache.get(text)
            if cond is None:
                cond = self._encode_one(tok)
                self._cache[text] = cond
                if len(self._cache) > COND_CACHE_SIZE:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(text)
            conds.append(cond)
        longest = max(c.shape[0] for c in conds)
        if any(c.shape[0] != longest for c in conds):
            if self._empty is None:
                self._empty = self._encode_one(self.backend.tokenize(""))
            window = self._empty.shape[0]
            conds = [torch.cat([c] + [self._empty] * ((longest - c.shape[0]) // window)) for c in conds]
        return torch.stack(conds)

    def set_training(self, training: bool) -> None:
        for pair in self.modules.values():
            for m in pair:
                m.train(training)

    def snapshot(self, step: int, meta: dict) -> Any:
        import dataclasses

        extra = dict(self.data.extra)
        extra["embed_studio"] = {**dict(extra.get("embed_studio") or {}), **meta}
        return dataclasses.replace(
            self.data,
            layers=modules_state(self.modules),
            step=step,
            sd_checkpoint=self.backend.checkpoint_hash or self.data.sd_checkpoint,
            sd_checkpoint_name=self.backend.checkpoint_name or self.data.sd_checkpoint_name,
            extra=extra,
        )

    def save(
        self, path: Path, step: int, optimizer_state: dict, meta: dict, name: str | None = None, state_tag: str = ""
    ) -> Any:
        from embed_studio.formats.hypernetwork import file_shorthash, save_hypernetwork
        from embed_studio.formats.optim import save_optimizer_state

        data = self.snapshot(step, meta)
        if name:
            data.name = name
        save_hypernetwork(data, path)
        # state_tag (another optimizer than AdamW) keeps the WebUI from loading this state into its AdamW.
        save_optimizer_state(
            path, _cpu_state(optimizer_state), file_shorthash(path) + state_tag, optimizer_name="AdamW"
        )
        return data

    def preview(self, request: PreviewRequest) -> Any:
        self.set_training(False)
        try:
            return self.backend.render_preview(request)
        finally:
            self.set_training(True)

    def close(self) -> None:
        self.backend.attach_hypernetwork(None)


def load_target(kind: str, path: Path, backend: Backend, trigger: str) -> EmbeddingTarget | HypernetworkTarget:
    if not path.is_file():
        what = "embedding" if kind == "embedding" else "hypernetwork"
        raise FileFormatError(
            f"{path} does not exist. Create it first: embed-studio create {what} {path.stem} --model ... "
            f"(or pick an existing {what} file)."
        )
    return (
        EmbeddingTarget(path, backend, trigger) if kind == "embedding" else HypernetworkTarget(path, backend, trigger)
    )
