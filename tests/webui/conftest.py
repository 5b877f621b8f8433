"""Start a real WebUI v1.10.1 (from SD_WEBUI_DIR) with this extension, once per test session.

Needs: SD_WEBUI_DIR (a v1.10.1 checkout with repositories/ and a checkpoint), this repository
linked or copied into its extensions/ folder, and SD_WEBUI_PYTHON (its interpreter; default
SD_WEBUI_DIR/venv/bin/python). SD_WEBUI_EXTRA_ARGS adds launch flags (e.g. --lowvram).
Every test here skips with the reason when any is missing.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
# The tests here import their helpers by name (pytest runs with --import-mode=importlib).
sys.path.insert(0, str(Path(__file__).parent))
from webui_helpers import BOORU_USER, remove_run, tagger_models  # noqa: E402

READY_ROUTES = ("/sdapi/v1/sd-models", "/embed-studio/v1/version")
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "DO_NOT_TRACK": "1",
    "PYTHONUNBUFFERED": "1",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _installed_extension(webui: Path) -> Path | None:
    for ext in (webui / "extensions").iterdir():
        if ext.resolve() == REPO or (ext / "embed_studio").resolve() == REPO / "embed_studio":
            return ext
    return None


@pytest.fixture(scope="session")
def webui(sd_webui_dir, tmp_path_factory):
    """A running WebUI: .url, .log (path), .dir."""
    python = Path(os.environ.get("SD_WEBUI_PYTHON", sd_webui_dir / "venv" / "bin" / "python"))
    if not python.exists():
        pytest.skip(f"SD_WEBUI_PYTHON not set and {python} does not exist")
    if _installed_extension(sd_webui_dir) is None:
        pytest.skip(f"link this repository into {sd_webui_dir / 'extensions'} (ln -s {REPO} .../embed-studio)")
    checkpoints = sorted((sd_webui_dir / "models" / "Stable-diffusion").glob("*.safetensors"))
    if not checkpoints:
        pytest.skip("no checkpoint in SD_WEBUI_DIR/models/Stable-diffusion")
    port = _free_port()
    home = tmp_path_factory.mktemp("webui")
    log = home / "webui.log"
    # Settings of this session only (the build's own config.json stays untouched), with ours set as a user
    # would in Settings → Embed Studio: the tests then see that the panels use it.
    tagger = tagger_models.build_tagger(home / "tiny-tagger")
    settings_file = home / "config.json"
    settings_file.write_text(
        json.dumps({
            "embed_studio_booru_user_agent_name": BOORU_USER,
        }),
        encoding="utf-8",
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "COMMANDLINE_ARGS"} | OFFLINE_ENV
    args = [
        str(python), "launch.py", "--use-cpu", "all", "--no-half", "--no-half-vae", "--precision", "full",
        "--skip-prepare-environment", "--skip-install", "--skip-torch-cuda-test", "--skip-version-check",
        "--no-download-sd-model", "--api", "--server-name", "127.0.0.1",
        "--port", str(port), "--ckpt", str(checkpoints[0]), "--ui-settings-file", str(settings_file),
        "--ui-config-file", str(home / "ui-config.json"),  # the panels' remembered field values, also fresh
        # e.g. SD_WEBUI_EXTRA_ARGS="--lowvram" runs the same tests with the WebUI's module offloading hooks.
        *shlex.split(os.environ.get("SD_WEBUI_EXTRA_ARGS", "")),
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            args, cwd=sd_webui_dir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 400
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the WebUI exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
            # Not before "Startup time": a request landing while v1.10.1 still starts can kill it ("Cannot add
            # middleware after an application has started"); then both its API and ours must answer (our routes
            # are added a moment after its own).
            if "Startup time" in log.read_text(errors="replace"):
                try:
                    if all(requests.get(f"{url}{route}", timeout=5).ok for route in READY_ROUTES):
                        break
                except requests.RequestException:
                    pass
            if time.monotonic() > deadline:
                pytest.fail(f"the WebUI did not answer in 400 s:\n{log.read_text(errors='replace')[-4000:]}")
            time.sleep(2)
        from types import SimpleNamespace

        yield SimpleNamespace(
            url=url,
            log=log,
            dir=sd_webui_dir,
            python=python,
            settings_file=settings_file,
            tagger=tagger,
            booru_user=BOORU_USER,
        )
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        except ProcessLookupError:
            pass  # it already exited; the failure above says why
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def name(webui, request):
    """A fresh embedding name (the test file's in it); its file and run folder are removed afterwards."""
    import uuid

    name = f"es-{request.module.__name__.rsplit('test_webui_', 1)[-1][:8]}-{uuid.uuid4().hex[:6]}"
    yield name
    remove_run(webui.dir, name)
