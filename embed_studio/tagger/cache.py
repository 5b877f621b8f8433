"""Raw probability vectors by image hash and model, so a rerun with other options re-infers nothing."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from embed_studio.fileio import WriteError, atomic_write_bytes

MEMORY_BYTES = 256 * 1024 * 1024


def file_hash(path: str | os.PathLike) -> str:
    """sha1 of the file's bytes: a renamed or copied image still hits the cache."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class ProbabilityCache:
    """In memory (bounded) and, when given a folder, one small .npy per image on disk.

    One file per image keeps every write atomic and independent: two runs, or a crash half
    way, never corrupt what was cached before.
    """

    def __init__(self, folder: str | os.PathLike | None, model_key: str, n_tags: int, memory_bytes: int = MEMORY_BYTES):
        self.folder = Path(folder) / model_key if folder else None
        self.n_tags = n_tags
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._max_items = max(16, memory_bytes // max(1, n_tags * 4))
        self._lock = threading.Lock()
        self.disk_error: str | None = None

    def _file(self, image_hash: str) -> Path:
        assert self.folder is not None
        return self.folder / image_hash[:2] / f"{image_hash}.npy"

    def get(self, image_hash: str) -> np.ndarray | None:
        with self._lock:
            hit = self._memory.get(image_hash)
            if hit is not None:
                self._memory.move_to_end(image_hash)
                return hit
        if self.folder is None:
            return None
        try:
            probs = np.load(self._file(image_hash), allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None  # absent or damaged: infer again
        if probs.shape != (self.n_tags,) or probs.dtype != np.float32:
            return None
        self._remember(image_hash, probs)
        return probs

    def put(self, image_hash: str, probs: np.ndarray) -> None:
        probs = np.asarray(probs, dtype=np.float32).reshape(-1)
        self._remember(image_hash, probs)
        if self.folder is None or self.disk_error:
            return
        buf = io.BytesIO()
        np.save(buf, probs, allow_pickle=False)
        target = self._file(image_hash)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, buf.getvalue())
        except (OSError, WriteError) as e:
            # The cache only saves time; a full or read-only disk must not stop tagging.
            self.disk_error = str(e)

    def _remember(self, image_hash: str, probs: np.ndarray) -> None:
        with self._lock:
            self._memory[image_hash] = probs
            self._memory.move_to_end(image_hash)
            while len(self._memory) > self._max_items:
                self._memory.popitem(last=False)


_caches: dict[tuple[str, str], ProbabilityCache] = {}
_caches_lock = threading.Lock()


def get_cache(folder: str | os.PathLike | None, model_key: str, n_tags: int) -> ProbabilityCache:
    """The process-wide cache for this model (its memory part outlives a single run)."""
    key = (str(folder or ""), model_key)
    with _caches_lock:
        cache = _caches.get(key)
        if cache is None or cache.n_tags != n_tags:
            cache = _caches[key] = ProbabilityCache(folder, model_key, n_tags)
        return cache
