"""Textual-inversion embeddings in the WebUI's formats: .pt/.bin, .safetensors and PNG/WebP previews."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embed_studio.errors import FileFormatError

if TYPE_CHECKING:
    import torch
    from PIL import Image

# The keys Embedding.save writes; anything else in a file is carried in EmbeddingData.extra.
WEBUI_EMBEDDING_KEYS = ("string_to_token", "string_to_param", "name", "step", "sd_checkpoint", "sd_checkpoint_name")
# The token id the WebUI writes for '*' (a leftover of the original textual-inversion code).
WEBUI_STAR_TOKEN = 265
SAFETENSORS_KEY = "emb_params"
# An SDXL embedding holds one tensor per text encoder, under these keys (the WebUI's textual_inversion_key);
# the trainer sees them side by side as one [n, 768 + 1280] tensor, CLIP-L first as the WebUI concatenates them.
SDXL_PARTS = (("clip_l", 768), ("clip_g", 1280))
SDXL_DIM = sum(width for _, width in SDXL_PARTS)
IMAGE_SUFFIXES = (".png", ".webp", ".jxl", ".avif")
PT_SUFFIXES = (".pt", ".bin")


@dataclass
class EmbeddingData:
    name: str
    vectors: torch.Tensor  # [n_vectors, dim], float32, cpu
    step: int | None = None  # steps trained so far (None for a new file), as the WebUI counts them
    sd_checkpoint: str | None = None  # short hash of the checkpoint trained on
    sd_checkpoint_name: str | None = None
    extra: dict = field(default_factory=dict)  # other top-level keys; ours live under extra["embed_studio"]

    @property
    def n_vectors(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[-1])

    @property
    def is_sdxl(self) -> bool:
        # No single-encoder model is 2048 wide, and the WebUI cannot use a 2048-wide single tensor on SDXL.
        return self.dim == SDXL_DIM

    def sdxl_parts(self) -> dict[str, torch.Tensor]:
        """{'clip_l': [n, 768], 'clip_g': [n, 1280]} float32 CPU: the tensors an SDXL file holds."""
        import torch

        vec = self.vectors.detach().to("cpu", torch.float32)
        parts, start = {}, 0
        for key, width in SDXL_PARTS:
            parts[key] = vec[:, start : start + width].contiguous().clone()
            start += width
        return parts

    def checksum(self) -> str:
        """The WebUI's Embedding.checksum(): the hash its optimizer sidecar (.pt.optim) is matched on."""
        import torch

        # Same arithmetic as the WebUI: float32 vectors times 100, truncated toward zero, folded in order.
        values = (self.vectors.detach().to("cpu", torch.float32).reshape(-1) * 100).to(torch.int64).tolist()
        r = 0
        for v in values:
            r = ((r * 281) ^ (v * 997)) & 0xFFFFFFFF
        return f"{r & 0xFFFF:04x}"

    def to_webui_dict(self) -> dict[str, Any]:
        """The dict Embedding.save writes (and the PNG chunk/border carry), our extras after its keys.

        For SDXL only the two tensors: the WebUI turns every value of an SDXL dict into a tensor, so a name or
        step beside them would make it refuse the file (the WebUI then names it by its file name)."""
        import torch

        if self.is_sdxl:
            return self.sdxl_parts()
        vec = self.vectors.detach().to("cpu", torch.float32).contiguous().clone()
        data: dict[str, Any] = {
            "string_to_token": {"*": WEBUI_STAR_TOKEN},
            "string_to_param": {"*": vec},
            "name": self.name,
            "step": self.step,
            "sd_checkpoint": self.sd_checkpoint,
            "sd_checkpoint_name": self.sd_checkpoint_name,
        }
        for key, value in self.extra.items():
            if key not in data:
                data[key] = value
        return data


def embedding_from_dict(data: Any, name: str, source: str | os.PathLike = "embedding") -> EmbeddingData:
    """Interpret what a file held the way the WebUI's create_embedding_from_data does."""
    import torch

    if not isinstance(data, dict) or not data:
        raise FileFormatError(f"{source}: not an embedding (it holds {type(data).__name__}, not a dict of vectors).")
    if "string_to_param" in data:
        params = data["string_to_param"]
        params = getattr(params, "_parameters", params)  # old files keep a ParameterDict
        if not isinstance(params, dict) or len(params) != 1:
            raise FileFormatError(f"{source}: an embedding file must hold exactly one term, found {len(params)}.")
        vec = next(iter(params.values()))
        extra = {k: v for k, v in data.items() if k not in WEBUI_EMBEDDING_KEYS}
    elif "clip_g" in data and "clip_l" in data:
        vec = _sdxl_vectors(data, source)
        extra = {}
    elif len(data) == 1 and isinstance(next(iter(data.values())), torch.Tensor):
        # diffusers concept files and .safetensors embeddings: one tensor under any key
        vec = next(iter(data.values()))
        extra = {}
    else:
        if any(isinstance(k, int) for k in data) or "layer_structure" in data:
            raise FileFormatError(f"{source}: this is a hypernetwork, not an embedding.")
        raise FileFormatError(f"{source}: not a textual-inversion embedding nor a diffusers concept file.")
    if not isinstance(vec, torch.Tensor) or vec.dim() not in (1, 2) or vec.numel() == 0:
        raise FileFormatError(f"{source}: the embedding vectors are not a 1-D or 2-D tensor.")
    if vec.dim() == 1:
        vec = vec.unsqueeze(0)
    vec = vec.detach().to("cpu", torch.float32)
    return EmbeddingData(
        name=_str_or(data.get("name"), name),
        vectors=vec,
        step=_int_or_none(data.get("step")),
        sd_checkpoint=_str_or(data.get("sd_checkpoint"), None),
        sd_checkpoint_name=_str_or(data.get("sd_checkpoint_name"), None),
        extra=extra,
    )


def _sdxl_vectors(data: dict, source: str | os.PathLike) -> torch.Tensor:
    import torch

    parts = []
    for key, width in SDXL_PARTS:
        part = data[key]
        if isinstance(part, torch.Tensor) and part.dim() == 1:
            part = part.unsqueeze(0)
        if not isinstance(part, torch.Tensor) or part.dim() != 2 or part.shape[-1] != width or part.numel() == 0:
            shape = list(part.shape) if isinstance(part, torch.Tensor) else type(part).__name__
            raise FileFormatError(f"{source}: an SDXL embedding needs '{key}' as [vectors, {width}], found {shape}.")
        parts.append(part.detach().to("cpu", torch.float32))
    if parts[0].shape[0] != parts[1].shape[0]:
        raise FileFormatError(
            f"{source}: clip_l has {parts[0].shape[0]} vectors but clip_g {parts[1].shape[0]}; they must match."
        )
    return torch.cat(parts, dim=1)


def load_embedding(path: str | os.PathLike) -> EmbeddingData:
    """Read an embedding from .pt/.bin, .safetensors or an image with embedded data (chunk, then border)."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{path}: file not found.")
    suffix = path.suffix.lower()
    stem = path.stem
    if suffix in PT_SUFFIXES:
        from embed_studio.formats.torchfile import load_pt

        return embedding_from_dict(load_pt(path), stem, path)
    if suffix == ".safetensors":
        return _load_safetensors(path)
    if suffix in IMAGE_SUFFIXES:
        from embed_studio.formats.png_embed import read_image_embedding

        data = read_image_embedding(path)
        if data is None:
            raise FileFormatError(
                f"{path}: this image carries no embedding (no 'sd-ti-embedding' chunk, no data border)."
            )
        return embedding_from_dict(data, stem, path)
    raise FileFormatError(f"{path}: unknown embedding file type '{suffix}'. Use .pt, .bin, .safetensors or .png.")


def save_embedding(data: EmbeddingData, path: str | os.PathLike) -> None:
    """Write by suffix: .pt (WebUI layout, passes its safe unpickler) or .safetensors; atomic."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".pt" and data.is_sdxl:
        raise FileFormatError(
            f"{path}: an SDXL embedding is saved as .safetensors; in a .pt the WebUI reads it only without its "
            "step and checkpoint. Use the name with .safetensors."
        )
    if suffix == ".pt":
        from embed_studio.formats.torchfile import save_webui_pt

        save_webui_pt(data.to_webui_dict(), path)
    elif suffix == ".safetensors":
        _save_safetensors(data, path)
    else:
        raise FileFormatError(f"{path}: embeddings are saved as .pt or .safetensors, not '{suffix}'.")


def save_png_with_embedding(
    image: Image.Image, data: EmbeddingData, path: str | os.PathLike, caption: str | None = None
) -> None:
    """A preview PNG carrying the embedding like the WebUI's: 'sd-ti-embedding' chunk plus data border."""
    from embed_studio.formats.png_embed import write_png_embedding

    write_png_embedding(image, data.to_webui_dict(), path, caption=caption)


def _save_safetensors(data: EmbeddingData, path: Path) -> None:
    import safetensors.torch
    import torch

    from embed_studio.fileio import atomic_write_bytes

    # The WebUI reads only the tensor; the rest rides in the header metadata (strings only).
    meta = {"name": data.name}
    for key in ("step", "sd_checkpoint", "sd_checkpoint_name"):
        value = getattr(data, key)
        if value is not None:
            meta[key] = str(value)
    if data.extra:
        try:
            meta["embed_studio_extra"] = json.dumps(data.extra)
        except TypeError as e:
            raise FileFormatError(f"{path}: extra metadata is not JSON-serialisable for .safetensors ({e}).") from e
    if data.is_sdxl:
        tensors = data.sdxl_parts()  # the WebUI's SDXL layout; it reads the tensors and ignores the metadata
    else:
        tensors = {SAFETENSORS_KEY: data.vectors.detach().to("cpu", torch.float32).contiguous()}
    atomic_write_bytes(path, safetensors.torch.save(tensors, metadata=meta))


def _load_safetensors(path: Path) -> EmbeddingData:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise FileFormatError(f"{path}: not a readable .safetensors file ({e}). It may be truncated.") from e
    emb = embedding_from_dict(tensors, path.stem, path)
    emb.name = meta.get("name", emb.name)
    emb.step = _int_or_none(meta.get("step"))
    emb.sd_checkpoint = meta.get("sd_checkpoint")
    emb.sd_checkpoint_name = meta.get("sd_checkpoint_name")
    if "embed_studio_extra" in meta:
        try:
            emb.extra = dict(json.loads(meta["embed_studio_extra"]))
        except (ValueError, TypeError):
            pass  # foreign or damaged metadata must not make the vectors unreadable
    return emb


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _str_or(value: Any, default: str | None) -> str | None:
    return value if isinstance(value, str) else default
