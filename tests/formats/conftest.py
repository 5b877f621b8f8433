"""Fixtures for the format tests: the WebUI-made files in data/ and an independent copy of its safe-load check."""

from __future__ import annotations

import collections
import io
import pickle
import re
import shutil
import zipfile
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture
def webui_files(tmp_path) -> Path:
    """A writable copy of the files WebUI v1.10.1 wrote (see data/README.md)."""
    dst = tmp_path / "webui"
    shutil.copytree(DATA, dst, ignore=shutil.ignore_patterns("*.md"))
    return dst


# Written here from reading modules/safe.py of v1.10.1, independently of embed_studio.formats.torchfile,
# so the tests do not check that module against itself.
_WEBUI_NAMES = re.compile(r"^([^/]+)/((data/\d+)|version|byteorder|.data/serialization_id|(data\.pkl))$")


class _WebuiUnpickler(pickle.Unpickler):
    def persistent_load(self, saved_id):
        import torch

        assert saved_id[0] == "storage"
        return torch.storage.TypedStorage(_internal=True)

    def find_class(self, module, name):
        import numpy
        import torch

        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in [
            "_rebuild_tensor_v2",
            "_rebuild_parameter",
            "_rebuild_device_tensor_from_numpy",
        ]:
            return getattr(torch._utils, name)
        if module == "torch" and name in [
            "FloatStorage",
            "HalfStorage",
            "IntStorage",
            "LongStorage",
            "DoubleStorage",
            "ByteStorage",
            "float32",
            "BFloat16Storage",
        ]:
            return getattr(torch, name)
        if module == "torch.nn.modules.container" and name in ["ParameterDict"]:
            return torch.nn.ParameterDict
        if module == "numpy" and name in ["dtype", "ndarray"]:
            return getattr(numpy, name)
        if module == "__builtin__" and name == "set":
            return set
        raise Exception(f"global '{module}/{name}' is forbidden")


def webui_would_load(path: Path) -> tuple[bool, str]:
    """(accepted, reason) as WebUI v1.10.1's check_pt decides for a zip .pt."""
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if not _WEBUI_NAMES.match(name):
                return False, f"bad file inside: {name}"
        pkls = [n for n in z.namelist() if re.match(r"^([^/]+)/data\.pkl$", n)]
        if len(pkls) != 1:
            return False, "data.pkl count"
        try:
            _WebuiUnpickler(io.BytesIO(z.read(pkls[0]))).load()
        except Exception as e:
            return False, str(e)
    return True, ""


@pytest.fixture
def webui_check():
    return webui_would_load
