"""Crafted embedding images: one clear line per file and bounded memory, never a traceback or gigabytes."""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from embed_studio.errors import FileFormatError
from embed_studio.formats.embedding import EmbeddingData, load_embedding, save_png_with_embedding
from embed_studio.formats.png_embed import PNG_CHUNK_KEY, _scramble

sys.path.insert(0, str(Path(__file__).parents[1]))
from cli_process import cli_command, cli_env  # noqa: E402


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(width: int, height: int, rows, before: tuple[bytes, ...] = (), after: tuple[bytes, ...] = ()) -> bytes:
    """An RGB PNG written chunk by chunk, so a huge image costs the test no memory."""
    comp = zlib.compressobj(9)
    idat = bytearray()
    for row in rows:
        idat += comp.compress(b"\0" + row)
    idat += comp.flush()
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    chunks = [header, *before, _chunk(b"IDAT", bytes(idat)), *after, _chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def _small_png(before: tuple[bytes, ...] = (), after: tuple[bytes, ...] = ()) -> bytes:
    return _png(8, 8, [b"\x80" * 24] * 8, before, after)


def _text(value: bytes) -> bytes:
    return _chunk(b"tEXt", PNG_CHUNK_KEY.encode() + b"\0" + value)


def _b64_json(obj) -> bytes:
    return base64.b64encode(json.dumps(obj).encode())


CRAFTED = {
    # strings where the vector numbers belong: a TypeError deep in the JSON decoder
    "strings.png": _small_png((_text(_b64_json({"string_to_param": {"*": {"TORCHTENSOR": [["a", "b"]]}}})),)),
    # arrays nested 200,000 deep: a RecursionError
    "deep.png": _small_png((_text(base64.b64encode(b"[" * 200_000 + b"]" * 200_000)),)),
    # a compressed text chunk after the pixels that inflates to 50 MB (Pillow stops at 1 MB, with a ValueError)
    "ztxt.png": _small_png(
        after=(_chunk(b"zTXt", PNG_CHUNK_KEY.encode() + b"\0\0" + zlib.compress(b"A" * 50_000_000, 9)),)
    ),
    "garbage.png": _small_png((_text(b"\xff\xfe not base64 at all !!"),)),
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_chunk_is_one_clear_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(CRAFTED[name])
    with pytest.raises(FileFormatError) as err:
        load_embedding(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def _border_png(packed: bytes, height: int = 64) -> Image.Image:
    """An image whose WebUI data border holds `packed` (the bytes the reader inflates), laid out like the WebUI's."""
    data = np.frombuffer(packed, np.uint8)
    size = data.size + (height - data.size % height)
    size += height * 3 - size % (height * 3)
    # A high nibble on every border pixel keeps the strips inside the reader's crop to content.
    low = _scramble(np.resize(data & 0x0F, size).reshape((height, -1, 3))) | 0x10
    high = _scramble(np.resize(data >> 4, size).reshape((height, -1, 3))) | 0x10
    width = low.shape[1]
    canvas = np.zeros((height, 2 * width + 16 + 2, 3), np.uint8)
    canvas[:, :width] = low
    canvas[:, width + 1 : width + 17] = 0x81  # the picture between the separators
    canvas[:, width + 18 :] = high
    return Image.fromarray(canvas)


def _deflate_bomb(size: int) -> bytes:
    comp = zlib.compressobj(9)
    block = b" " * 2**20
    out = bytearray()
    for _ in range(size // len(block)):
        out += comp.compress(block)
    return bytes(out + comp.flush())


def test_data_border_bomb_is_refused_with_bounded_memory(tmp_path):
    # ~150 KB of border that inflates to 150 MB of text.
    path = tmp_path / "border-bomb.png"
    _border_png(_deflate_bomb(150 * 2**20)).save(path)
    assert path.stat().st_size < 1_000_000
    tracemalloc.start()
    try:
        with pytest.raises(FileFormatError) as err:
            load_embedding(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(path) in str(err.value)
    assert peak < 48 * 2**20, f"reading the crafted border allocated {peak >> 20} MB"


def test_a_real_border_still_reads(tmp_path):
    path = tmp_path / "ok.png"
    vectors = torch.randn(3, 32)
    save_png_with_embedding(Image.new("RGB", (64, 64), (90, 120, 150)), EmbeddingData("ok", vectors, step=4), path)
    assert torch.allclose(load_embedding(path).vectors, vectors)


def _inspect_peak_rss(files: list[Path], cwd: Path) -> tuple[int, str, str, int]:
    """Run `embed-studio inspect FILES` and return (exit code, stdout, stderr, the child's own peak RSS in KB)."""
    out, err = cwd / "out.txt", cwd / "err.txt"
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen([*cli_command(), "inspect", *map(str, files)], env=cli_env(), stdout=o, stderr=e)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, out.read_text(), err.read_text(), usage.ru_maxrss


@pytest.mark.skipif(not hasattr(os, "wait4"), reason="needs os.wait4 for a child's own peak memory")
def test_pixel_bomb_and_crafted_files_do_not_stop_inspect(tmp_path):
    good = tmp_path / "good.png"
    save_png_with_embedding(Image.new("RGB", (64, 64), (90, 120, 150)), EmbeddingData("good", torch.randn(2, 32)), good)
    # 10000 x 10000 pixels in about 300 KB: 300 MB once decoded, gigabytes as numpy copies.
    bomb = tmp_path / "pixels.png"
    row = b"\x01" * 30_000
    bomb.write_bytes(_png(10_000, 10_000, (row for _ in range(10_000))))
    assert bomb.stat().st_size < 400_000
    strings = tmp_path / "strings.png"
    strings.write_bytes(CRAFTED["strings.png"])

    rc0, _, err0, baseline = _inspect_peak_rss([good], tmp_path)
    assert rc0 == 0, err0
    rc, out, err, peak = _inspect_peak_rss([bomb, strings, good], tmp_path)
    assert rc == 1
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and str(bomb) in errors[0] and str(strings) in errors[1], err
    assert f"{good}: embedding" in out  # the file after the bad ones was still inspected
    assert peak - baseline < 150 * 1024, f"peak {peak >> 10} MB against {baseline >> 10} MB for a good file"
