"""Embeddings stored in images the WebUI's way: the 'sd-ti-embedding' text chunk and the data border."""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from embed_studio.errors import FileFormatError

PNG_CHUNK_KEY = "sd-ti-embedding"
_TENSOR_TAG = "TORCHTENSOR"
_CHANNELS = 3
# Caps for files from anywhere: a WebUI preview with its border is about 1-2 Mpx and its JSON (75 vectors of
# 1024 numbers) under 2 MB, so these leave room for any real file and keep a crafted one to ~100 MB of memory.
MAX_IMAGE_PIXELS = 2**23
MAX_EMBEDDING_JSON = 8 * 2**20


def _to_jsonable(obj: Any) -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        return {_TENSOR_TAG: obj.detach().cpu().numpy().tolist()}
    raise TypeError(f"{type(obj).__name__} cannot be stored in an image")


def _from_jsonable(d: dict) -> Any:
    if _TENSOR_TAG in d:
        import torch

        return torch.from_numpy(np.array(d[_TENSOR_TAG]))
    return d


def embedding_json(data: dict) -> str:
    """The JSON text the WebUI stores: tensors as {'TORCHTENSOR': nested lists}."""
    return json.dumps(data, default=_to_jsonable)


def embedding_to_b64(data: dict) -> bytes:
    return base64.b64encode(embedding_json(data).encode())


def embedding_from_b64(text: str | bytes) -> Any:
    """The data of an 'sd-ti-embedding' chunk. Raises ValueError if it is damaged or too large."""
    if len(text) > MAX_EMBEDDING_JSON * 4 // 3 + 4:
        raise ValueError(f"{len(text)} bytes of embedding text, more than any embedding holds")
    return _decode_json(base64.b64decode(text))


def _decode_json(raw: bytes) -> Any:
    # Whatever the bytes hold (bad UTF-8, nesting a million deep, strings where numbers belong), it is one
    # ValueError here: the reader turns it into a FileFormatError naming the file.
    try:
        return json.loads(raw, object_hook=_from_jsonable)
    except (ValueError, TypeError, RecursionError, OverflowError) as e:
        raise ValueError(f"{type(e).__name__}: {str(e)[:200]}") from None


def _lcg_nibble_mask(count: int) -> np.ndarray:
    """The WebUI's fixed pseudo-random stream (LCG seed 0, each value mod 255), low nibble only.

    Computed in blocks: x[n+K] = A_K * x[n] + C_K (mod 2**32), so a large border costs no Python loop.
    """
    m, a, c = 2**32, 1664525, 1013904223
    block = 1024
    first = np.empty(block, dtype=np.uint64)
    x = 0
    for i in range(block):
        x = (a * x + c) % m
        first[i] = x
    a_k, c_k = 1, 0
    for _ in range(block):  # compose the single step K times: x -> a_k*x + c_k
        a_k, c_k = (a * a_k) % m, (a * c_k + c) % m
    rows = max(1, -(-count // block))
    out = np.empty((rows, block), dtype=np.uint64)
    out[0] = first
    mask = np.uint64(m - 1)
    for r in range(1, rows):
        out[r] = (np.uint64(a_k) * out[r - 1] + np.uint64(c_k)) & mask
    return ((out.reshape(-1)[:count] % np.uint64(255)) & np.uint64(0x0F)).astype(np.uint8)


def _scramble(block: np.ndarray) -> np.ndarray:
    # XOR with the stream is its own inverse: used to hide and to recover the nibbles.
    return block.astype(np.uint8) ^ _lcg_nibble_mask(block.size).reshape(block.shape)


def _dot_pattern(block: np.ndarray, shades: np.ndarray) -> np.ndarray:
    """Decorate the high nibbles with staggered grey dots (only for looks; readers ignore them)."""
    h, w = block.shape[0], block.shape[1]
    im = Image.new("RGB", (w, h))
    draw = ImageDraw.Draw(im)
    i = 0
    for x in range(-6, w, 8):
        for row, y in enumerate(range(-6, h, 8)):
            dx = 4 if row % 2 == 0 else 0
            shade = int(shades[i % len(shades)])
            i += 1
            draw.ellipse((x + dx, y, x + 6 + dx, y + 6), fill=(shade, shade, shade))
    return block ^ (np.array(im).astype(np.uint8) & 0xF0)


def _first_vectors(data: dict) -> Any:
    """The vectors the border's dots and the footer are drawn from: the term's, or an SDXL file's first tensor."""
    if "string_to_param" in data:
        return next(iter(data["string_to_param"].values()))
    return next(v for v in data.values() if hasattr(v, "detach"))


def add_data_border(image: Image.Image, data: dict) -> Image.Image:
    """The WebUI's visual data border: zlib'd JSON as nibbles in a strip left (low) and right (high)."""
    packed = np.frombuffer(zlib.compress(embedding_json(data).encode(), level=9), np.uint8)
    h = image.size[1]
    # Same sizing as the WebUI (it always adds at least one column's worth), so the strips match.
    size = packed.size + (h - packed.size % h)
    size += h * _CHANNELS - size % (h * _CHANNELS)
    low = np.resize(packed & 0x0F, size).reshape((h, -1, _CHANNELS))
    high = np.resize(packed >> 4, size).reshape((h, -1, _CHANNELS))

    vectors = _first_vectors(data).detach().cpu().double().numpy()
    vec0 = np.abs(vectors.reshape(-1, vectors.shape[-1])[0][:1024])
    peak = float(vec0.max()) if vec0.size else 0.0
    shades = (vec0 / peak * 255).astype(np.uint8) if peak > 0 else np.zeros(max(1, vec0.size), np.uint8)

    low_im = Image.fromarray(_scramble(_dot_pattern(low, shades)))
    high_im = Image.fromarray(_scramble(_dot_pattern(high, shades[::-1])))
    canvas = Image.new("RGB", (image.size[0] + low_im.size[0] + high_im.size[0] + 2, h), (0, 0, 0))
    canvas.paste(low_im, (0, 0))
    canvas.paste(image.convert("RGB"), (low_im.size[0] + 1, 0))
    canvas.paste(high_im, (low_im.size[0] + 1 + image.size[0] + 1, 0))
    return canvas


def _crop_to_content(arr: np.ndarray) -> np.ndarray:
    # The bounding box of pixels with no zero channel, as the WebUI crops before reading.
    mask = (arr > 0).all(2)
    cols, rows = np.flatnonzero(mask.any(0)), np.flatnonzero(mask.any(1))
    if cols.size == 0:
        return arr[:0, :0]
    return arr[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def read_data_border(image: Image.Image) -> Any | None:
    """The data in a WebUI data border, or None when the image has none. Raises ValueError if damaged."""
    arr = _crop_to_content(np.asarray(image.convert("RGB"), dtype=np.uint8)) & 0x0F
    separators = np.flatnonzero(arr.sum(axis=(0, 2)) == 0)
    if separators.size < 2:
        return None
    low = _scramble(arr[:, : separators.min(), :])
    high = _scramble(arr[:, separators.max() + 1 :, :])
    if low.shape != high.shape or low.size == 0:
        return None
    raw = ((high << 4) | low).reshape(-1).tobytes()
    d = zlib.decompressobj()
    # Capped: a few hundred KB of border can inflate to gigabytes.
    text = d.decompress(raw, MAX_EMBEDDING_JSON + 1)
    if len(text) > MAX_EMBEDDING_JSON:
        raise ValueError(f"it inflates to more than {MAX_EMBEDDING_JSON >> 20} MB, more than any embedding holds")
    if not d.eof:
        raise ValueError("data border is incomplete")
    return _decode_json(text)


def read_image_embedding(path: str | os.PathLike) -> Any | None:
    """What an image carries: its 'sd-ti-embedding' chunk if present, else its data border, else None."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            # The header's size, before any pixel is decoded: a few hundred KB of PNG can decode to gigabytes.
            if im.size[0] * im.size[1] > MAX_IMAGE_PIXELS:
                raise FileFormatError(
                    f"{path}: {im.size[0]}x{im.size[1]} pixels is far larger than an embedding image; not read."
                )
            im.load()
            text = getattr(im, "text", None) or {}
            if PNG_CHUNK_KEY in text:
                try:
                    return embedding_from_b64(text[PNG_CHUNK_KEY])
                except (ValueError, binascii.Error) as e:
                    raise FileFormatError(f"{path}: its '{PNG_CHUNK_KEY}' chunk is damaged ({e}).") from e
            try:
                return read_data_border(im)
            except (ValueError, zlib.error) as e:
                raise FileFormatError(f"{path}: its embedding data border is damaged or absent ({e}).") from e
    except FileFormatError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        # ValueError: Pillow's own caps (a text chunk that inflates past 1 MB, ...).
        raise FileFormatError(f"{path}: not a readable image ({e}).") from e


def _font(size: int) -> ImageFont.ImageFont:
    for name in ("DejaVuSans.ttf", "Arial.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1
    except TypeError:
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont) -> tuple[int, int]:
    try:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    except (ValueError, AttributeError):  # old Pillow with its bitmap fallback font
        return max(1, 6 * len(text)), 11
    return max(1, right - left), max(1, bottom - top)


def caption_overlay(image: Image.Image, title: str, footer: tuple[str, str, str] = ("", "", "")) -> Image.Image:
    """Darken top and bottom edges and write a title and three footer texts, like the WebUI's previews."""
    out = image.convert("RGBA")
    w, h = out.size
    shade = Image.new("RGBA", (1, h))
    for y in range(h):
        mag = max(1 - math.cos(y / h * 1.5), 1 - math.cos((h - y) / h * 1.5 * 1.1))
        shade.putpixel((0, y), (0, 0, 0, int(mag * 255)))
    out = Image.alpha_composite(out, shade.resize(out.size))
    draw = ImageDraw.Draw(out)
    pad = 10
    fill = (255, 255, 255, 230)
    size = 32
    tw, _ = _text_size(draw, title, _font(size))
    size = max(6, min(int(size * ((w * 0.75 - pad * 4) / tw)), 72))
    draw.text((pad, pad), title, font=_font(size), fill=fill)
    texts = list(footer)
    if any(texts):
        fsize = size
        for t in texts:
            if t:
                fw, _ = _text_size(draw, t, _font(size))
                fsize = min(fsize, max(6, min(int(size * ((w / 3 - pad) / fw)), 72)))
        font = _font(fsize)
        for t, anchor_x in zip(texts, (0.0, 0.5, 1.0), strict=True):
            if not t:
                continue
            fw, fh = _text_size(draw, t, font)
            x = pad + (w - 2 * pad - fw) * anchor_x
            draw.text((x, h - pad - fh), t, font=font, fill=fill)
    return out.convert("RGB")


def write_png_embedding(image: Image.Image, data: dict, path: str | os.PathLike, caption: str | None = None) -> None:
    """Save a PNG with the embedding in an 'sd-ti-embedding' chunk and a data border; atomic."""
    from embed_studio.fileio import atomic_writer

    vec = _first_vectors(data)
    if caption is not None:
        footer = (
            str(data.get("sd_checkpoint_name") or ""),
            f"[{data.get('sd_checkpoint') or ''}]",
            f"{vec.shape[0]}v {data.get('step') or 0}s",
        )
        image = caption_overlay(image, caption, footer)
    bordered = add_data_border(image.convert("RGB"), data)
    info = PngImagePlugin.PngInfo()
    info.add_text(PNG_CHUNK_KEY, embedding_to_b64(data))
    with atomic_writer(path) as f:
        bordered.save(f, format="PNG", pnginfo=info)
