"""install.py: the WebUI's pinned packages are held at their installed versions when ours are added."""

from __future__ import annotations

import importlib.util
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _install_module():
    spec = importlib.util.spec_from_file_location("embed_studio_install", ROOT / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines functions only: main() runs when the WebUI executes the file
    return module


def test_held_versions_pin_what_is_installed(tmp_path):
    requirements = tmp_path / "requirements_versions.txt"
    # The WebUI's file: CRLF line ends, comments, pins, a bare name, and packages this venv lacks.
    requirements.write_bytes(
        b"setuptools==69.5.1  # temp fix\r\nnumpy==1.26.2\r\ntorch\r\nnot-a-real-package==1.0\r\n\r\n# comment\r\n"
    )
    held = _install_module().held_versions(str(requirements))
    assert f"numpy=={metadata.version('numpy')}" in held  # the installed version, not the file's pin
    assert f"torch=={metadata.version('torch')}" in held
    assert not any(h.startswith("not-a-real-package") for h in held)
    assert len(held) == len({h.split("==")[0].lower() for h in held})  # torch once, though named twice


def test_without_a_requirements_file_torch_is_still_held(tmp_path):
    held = _install_module().held_versions(str(tmp_path / "missing.txt"))
    assert held[0] == f"torch=={metadata.version('torch')}"
