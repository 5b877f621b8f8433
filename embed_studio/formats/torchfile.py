"""Reading and writing torch .pt files in the layout WebUI v1.10.1's restricted unpickler accepts."""

from __future__ import annotations

import collections
import io
import os
import pickle
import pickletools
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

from embed_studio.errors import FileFormatError
from embed_studio.fileio import atomic_write_bytes

# What modules/safe.py (v1.10.1) lets through: zip entries '<dir>/data.pkl', '<dir>/version',
# '<dir>/byteorder', '<dir>/data/<n>' and '<dir>/.data/serialization_id' (its '.' is unescaped, so we
# match it the same way). Torch >= 2.4 also writes .format_version and .storage_alignment, which it rejects.
WEBUI_ALLOWED_ZIP_NAME = re.compile(r"^([^/]+)/((data/\d+)|version|byteorder|.data/serialization_id|(data\.pkl))$")
_DATA_PKL = re.compile(r"^([^/]+)/data\.pkl$")

# The globals its RestrictedUnpickler.find_class allows (module -> names). The pytorch_lightning entries
# are left out: nothing we write uses them and importing that package is not wanted here.
WEBUI_ALLOWED_GLOBALS: dict[str, frozenset[str]] = {
    "collections": frozenset({"OrderedDict"}),
    "torch._utils": frozenset({"_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_device_tensor_from_numpy"}),
    "torch": frozenset(
        {
            "FloatStorage",
            "HalfStorage",
            "IntStorage",
            "LongStorage",
            "DoubleStorage",
            "ByteStorage",
            "float32",
            "BFloat16Storage",
        }
    ),
    "torch.nn.modules.container": frozenset({"ParameterDict"}),
    "numpy.core.multiarray": frozenset({"scalar", "_reconstruct"}),
    "numpy": frozenset({"dtype", "ndarray"}),
    "_codecs": frozenset({"encode"}),
    "__builtin__": frozenset({"set"}),
}

# torch aligns tensor data inside the zip so that files can be memory-mapped; keep doing that.
_ALIGNMENT = 64
_PAD_EXTRA_ID = b"FB"  # the extra-field id torch's own writer uses for this padding
_ZIP_LOCAL_HEADER = 30


def _archive_name(path: Path) -> str:
    # torch names the folder inside the zip after the file name minus its last suffix.
    stem = path.stem if path.suffix else path.name
    return stem if stem and re.fullmatch(r"[A-Za-z0-9._ -]+", stem) else "archive"


def webui_pt_bytes(obj: Any, archive_name: str = "archive") -> bytes:
    """torch.save(obj) as bytes, rewritten to hold only the zip entries the WebUI's checker accepts."""
    import torch

    raw = io.BytesIO()
    # Protocol 2 (torch's default) pinned: it names classes with GLOBAL opcodes, as the WebUI's files do.
    torch.save(obj, raw, pickle_protocol=2)
    out = io.BytesIO()
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            record = info.filename.split("/", 1)[1]
            name = f"{archive_name}/{record}"
            if not WEBUI_ALLOWED_ZIP_NAME.match(name):
                # Only the newer bookkeeping records (.format_version, .storage_alignment) end up here;
                # torch.load falls back to its defaults (alignment 64) without them.
                continue
            data = src.read(info)
            zi = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_STORED
            header_end = out.tell() + _ZIP_LOCAL_HEADER + len(name.encode()) + 4
            pad = -header_end % _ALIGNMENT
            zi.extra = _PAD_EXTRA_ID + struct.pack("<H", pad) + b"Z" * pad
            dst.writestr(zi, data)
    result = out.getvalue()
    problem = webui_safe_pt_problem(result, execute=False)
    if problem:
        raise FileFormatError(
            f"refusing to write a .pt the WebUI would reject ({problem}). "
            "Only tensors, numbers, strings, lists and dicts can be stored in it."
        )
    return result


def save_webui_pt(obj: Any, path: str | os.PathLike) -> None:
    """Write `obj` like torch.save, in a zip layout WebUI v1.10.1's safe unpickler accepts; atomic."""
    path = Path(path)
    try:
        blob = webui_pt_bytes(obj, _archive_name(path))
    except FileFormatError as e:
        raise FileFormatError(f"{path}: {e}") from e
    atomic_write_bytes(path, blob)


class _RestrictedUnpickler(pickle.Unpickler):
    """The same allow-list as the WebUI's RestrictedUnpickler, so a test can run its check here."""

    def persistent_load(self, saved_id: Any) -> Any:
        import torch

        if not (isinstance(saved_id, tuple) and saved_id and saved_id[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {saved_id!r}")
        return torch.storage.TypedStorage(_internal=True)

    def find_class(self, module: str, name: str) -> Any:
        if name not in WEBUI_ALLOWED_GLOBALS.get(module, ()):
            raise pickle.UnpicklingError(f"global '{module}/{name}' is forbidden")
        if module == "collections":
            return collections.OrderedDict
        if module == "__builtin__":
            return set
        if module == "_codecs":
            import _codecs

            return _codecs.encode
        if module.startswith("torch"):
            import importlib

            return getattr(importlib.import_module(module), name)
        import numpy

        return getattr(numpy, name) if module == "numpy" else getattr(numpy.core.multiarray, name)


def _forbidden_globals(pkl: bytes) -> list[str]:
    found = []
    for opcode, arg, _ in pickletools.genops(pkl):
        if opcode.name in ("GLOBAL", "INST"):
            module, name = str(arg).split(" ", 1)
            if name not in WEBUI_ALLOWED_GLOBALS.get(module, ()):
                found.append(f"{module}/{name}")
        elif opcode.name == "STACK_GLOBAL":
            found.append("<STACK_GLOBAL: pickle protocol 4+>")
    return found


def webui_safe_pt_problem(source: str | os.PathLike | bytes, execute: bool = True) -> str | None:
    """Why WebUI v1.10.1 (without --disable-safe-unpickle) would refuse this .pt, or None if it loads it.

    Mirrors modules/safe.py check_pt: every zip entry must match its allowed names, there must be exactly
    one data.pkl, and unpickling it may only touch the allowed globals. With execute=False the pickle is
    scanned for globals instead of run (no tensor memory is allocated).
    """
    blob = source if isinstance(source, bytes) else Path(source).read_bytes()
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as z:
            names = z.namelist()
            for name in names:
                if not WEBUI_ALLOWED_ZIP_NAME.match(name):
                    return f"zip entry '{name}' is not allowed"
            pkls = [n for n in names if _DATA_PKL.match(n)]
            if len(pkls) != 1:
                return "no data.pkl" if not pkls else "several data.pkl"
            pkl = z.read(pkls[0])
    except zipfile.BadZipFile:
        return _legacy_problem(blob)
    try:
        if execute:
            _RestrictedUnpickler(io.BytesIO(pkl)).load()
        else:
            bad = _forbidden_globals(pkl)
            if bad:
                return f"global '{bad[0]}' is forbidden"
    except Exception as e:  # the WebUI rejects the file on any error here
        return str(e) or type(e).__name__
    return None


def _legacy_problem(blob: bytes) -> str | None:
    # Pre-zip torch files are five pickles in a row; the WebUI unpickles all five with the same allow-list.
    stream = io.BytesIO(blob)
    try:
        for _ in range(5):
            _RestrictedUnpickler(stream).load()
    except Exception as e:
        return str(e) or type(e).__name__
    return None


def check_webui_safe_pt(path: str | os.PathLike) -> None:
    """Raise FileFormatError naming the file if WebUI v1.10.1's restricted unpickler would reject it."""
    problem = webui_safe_pt_problem(path)
    if problem:
        raise FileFormatError(
            f"{path}: the WebUI's safe loader would skip this file ({problem}). "
            "Re-save it with Embed Studio, or start the WebUI with --disable-safe-unpickle if you trust it."
        )


def load_pt(path: str | os.PathLike, mmap: bool = False) -> Any:
    """torch.load(weights_only=True) with errors turned into a FileFormatError naming the file.

    Old textual-inversion files keep their vectors in a torch.nn.ParameterDict, which the WebUI also
    allows; it is allowed here too and nothing else. mmap: the tensors stay in the file, memory-mapped, until
    used (a multi-GB checkpoint's key names cost only its pickle); the file must be in torch's zip format.
    """
    import torch

    # torch.serialization.load, not torch.load: inside the WebUI torch.load is its safe.load, which rejects
    # files a newer torch wrote and returns None. weights_only=True is a restricted unpickler of its own.
    load = torch.serialization.load
    path = Path(path)
    try:
        return load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise FileFormatError(f"{path}: file not found.") from None
    except Exception as first:
        if "ParameterDict" in str(first) and hasattr(torch.serialization, "safe_globals"):
            try:
                with torch.serialization.safe_globals([torch.nn.ParameterDict]):
                    return load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except Exception as e:
                first = e
        raise FileFormatError(
            f"{path}: not a readable torch file ({_short(first)}). It may be truncated or not a .pt at all."
        ) from first


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:200]
