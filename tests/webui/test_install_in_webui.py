"""install.py against the real WebUI's environment: pip's resolver, asked what adding onnxruntime would change."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.webui

REPO = Path(__file__).resolve().parents[2]


def test_adding_onnxruntime_keeps_every_pinned_package(sd_webui_dir, tmp_path):
    python = Path(os.environ.get("SD_WEBUI_PYTHON", sd_webui_dir / "venv" / "bin" / "python"))
    if not python.exists():
        pytest.skip(f"SD_WEBUI_PYTHON not set and {python} does not exist")
    # install.py's own held_versions(), run by the WebUI's interpreter on the WebUI's requirements file.
    code = (
        "import importlib.util, json, sys; "
        f"spec = importlib.util.spec_from_file_location('i', {str(REPO / 'install.py')!r}); "
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
        f"print(json.dumps(m.held_versions({str(sd_webui_dir / 'requirements_versions.txt')!r})))"
    )
    held = json.loads(subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout)
    installed = dict(h.split("==", 1) for h in held)
    assert {"protobuf", "numpy", "torch"} <= {name.lower() for name in installed}
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("\n".join(held) + "\n")
    report = tmp_path / "report.json"
    # --force-reinstall makes pip resolve onnxruntime and all it needs afresh, as on a WebUI without it.
    run = subprocess.run(
        [str(python), "-m", "pip", "install", "--dry-run", "--quiet", "--force-reinstall", "--report", str(report),
         "onnxruntime", "-c", str(constraints)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if run.returncode != 0 and ("connection" in run.stderr.lower() or "network" in run.stderr.lower()):
        pytest.skip(f"PyPI is not reachable: {run.stderr.strip()[-300:]}")
    assert run.returncode == 0, run.stderr
    chosen = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert "onnxruntime" in chosen
    changed = {
        name: (version, chosen[name.lower()])
        for name, version in installed.items()
        if name.lower() in chosen and chosen[name.lower()] != version
    }
    assert not changed, f"adding onnxruntime would change the WebUI's pinned packages: {changed}"
