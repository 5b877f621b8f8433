"""Tell what a WebUI file is (embedding, hypernetwork, optimizer sidecar) and summarise it as plain data."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from embed_studio.errors import FileFormatError


def describe_file(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON-ready summary of one file; raises FileFormatError naming the file if it is none of ours."""
    from embed_studio.formats import embedding, hypernetwork, optim
    from embed_studio.formats.torchfile import load_pt, webui_safe_pt_problem

    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{path}: file not found.")
    suffix = path.suffix.lower()
    info: dict[str, Any] = {"file": str(path)}
    if suffix in (".pt", ".bin", ".optim"):
        obj = load_pt(path)
        problem = webui_safe_pt_problem(path)
        safety = {"webui_safe_load": problem is None, "webui_safe_load_problem": problem}
        if isinstance(obj, dict) and "optimizer_state_dict" in obj and "hash" in obj:
            state = obj.get("optimizer_state_dict") or {}
            groups = state.get("param_groups", []) if isinstance(state, dict) else []
            info.update(
                kind="optimizer state",
                hash=obj.get("hash"),
                optimizer_name=obj.get("optimizer_name"),
                param_groups=len(groups),
                lr=[g.get("lr") for g in groups if isinstance(g, dict)],
            )
            return {**info, **safety}
        if isinstance(obj, dict) and any(type(k) is int for k in obj):
            hn = hypernetwork.hypernetwork_from_dict(obj, path.stem, path)
            sidecar = optim.sidecar_status(path, hypernetwork.file_shorthash(path))
            info.update(_hypernetwork_summary(hn), optimizer_state=sidecar)
            return {**info, **safety}
        emb = embedding.embedding_from_dict(obj, path.stem, path)
        sidecar = optim.sidecar_status(path, emb.checksum())
        info.update(_embedding_summary(emb), format=suffix.lstrip("."), optimizer_state=sidecar)
        info["prompt_word"] = path.stem
        return {**info, **safety}
    if suffix == ".safetensors" or suffix in embedding.IMAGE_SUFFIXES:
        emb = embedding.load_embedding(path)
        info.update(_embedding_summary(emb), format=suffix.lstrip("."))
        # The WebUI names file embeddings by file name, image ones by the name stored inside.
        info["prompt_word"] = emb.name if suffix in embedding.IMAGE_SUFFIXES else path.stem
        return info
    raise FileFormatError(f"{path}: not an embedding, hypernetwork or optimizer file (unknown type '{suffix}').")


_FAMILY_BY_DIM = {768: "SD 1.x", 1024: "SD 2.x"}


def _embedding_summary(emb: Any) -> dict[str, Any]:
    from embed_studio.formats.embedding import SDXL_PARTS

    ours = emb.extra.get("embed_studio") if isinstance(emb.extra.get("embed_studio"), dict) else {}
    clip_skip = ours.get("clip_skip")
    return {
        "kind": "embedding",
        "name": emb.name,
        "vectors": emb.n_vectors,
        "dims": emb.dim,
        "model": "SDXL" if emb.is_sdxl else _FAMILY_BY_DIM.get(emb.dim, "unknown"),
        "parts": {key: width for key, width in SDXL_PARTS} if emb.is_sdxl else None,
        "clip_skip": clip_skip if isinstance(clip_skip, int) else None,
        "step": emb.step,
        "sd_checkpoint": emb.sd_checkpoint,
        "sd_checkpoint_name": emb.sd_checkpoint_name,
        "checksum": emb.checksum(),
    }


def _hypernetwork_summary(hn: Any) -> dict[str, Any]:
    return {
        "kind": "hypernetwork",
        "name": hn.name,
        "sizes": hn.sizes,
        "layer_structure": list(hn.layer_structure),
        "activation_func": hn.activation_func,
        "weight_initialization": hn.weight_initialization,
        "is_layer_norm": hn.is_layer_norm,
        "use_dropout": hn.use_dropout,
        "dropout_structure": hn.effective_dropout_structure(),
        "activate_output": hn.activate_output,
        "step": hn.step,
        "sd_checkpoint": hn.sd_checkpoint,
        "sd_checkpoint_name": hn.sd_checkpoint_name,
        "optional_info": hn.optional_info,
    }
