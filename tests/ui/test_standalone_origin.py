"""`embed-studio ui`, started for real on 127.0.0.1, answers only its own page (issue 11).

A website open in the same browser must not call the app's handlers (HTTP or the queue's websocket), read its
answers, reach it under another host name (DNS rebinding), or read files under the folder it was started in.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
EVIL = "https://evil.example"
STARTUP_LIMIT = 300  # a safety net on a loaded machine, not a timing assertion


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The real command, started in a folder holding a secret; .url, .port, .secret."""
    start = tmp_path_factory.mktemp("start-folder")
    secret = start / "secret.txt"
    secret.write_text("the user's private notes", encoding="utf-8")
    home = tmp_path_factory.mktemp("home")
    port = _free_port()
    env = os.environ | {
        "PYTHONPATH": str(REPO), "EMBED_STUDIO_HOME": str(home), "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1",
    }  # fmt: skip
    log = home / "ui.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "embed_studio", "ui", "--host", "127.0.0.1", "--port", str(port)],
            cwd=start, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_LIMIT
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"embed-studio ui exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
                )
            try:
                if requests.get(url, timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"embed-studio ui did not answer:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        from types import SimpleNamespace

        yield SimpleNamespace(url=url, port=port, secret=secret)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_its_own_page_still_works(app):
    page = requests.get(app.url, timeout=30)
    assert page.status_code == 200 and "<html" in page.text.lower()
    own = requests.get(f"{app.url}/config", headers={"Origin": app.url}, timeout=30)
    assert own.status_code == 200 and "components" in own.json()


@pytest.mark.parametrize("origin", [EVIL, "null", "http://127.0.0.1:1"])
def test_another_origin_gets_nothing(app, origin):
    r = requests.get(f"{app.url}/config", headers={"Origin": origin}, timeout=30)
    assert r.status_code == 403
    assert "components" not in r.text
    assert "access-control-allow-origin" not in r.headers


def test_no_preflight_allows_another_origin(app):
    r = requests.options(
        f"{app.url}/run/predict",
        headers={"Origin": EVIL, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"},
        timeout=30,
    )  # fmt: skip
    assert "access-control-allow-origin" not in r.headers
    posted = requests.post(
        f"{app.url}/run/predict", json={"fn_index": 0, "data": []}, headers={"Origin": EVIL}, timeout=30
    )
    assert posted.status_code == 403


def _websocket_status(app, origin: str) -> str:
    """The status line the server answers a websocket handshake to /queue/join with."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /queue/join HTTP/1.1\r\nHost: 127.0.0.1:{app.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", app.port), timeout=30) as sock:
        sock.sendall(request.encode())
        return sock.recv(4096).decode("latin-1").split("\r\n", 1)[0]


def test_the_queue_websocket_refuses_another_origin(app):
    # Browsers apply no CORS to websockets: the Origin check is all that keeps a website off the queue.
    assert " 101 " in _websocket_status(app, app.url)
    assert " 403 " in _websocket_status(app, EVIL)


def test_another_host_name_is_refused(app):
    # DNS rebinding: a website's own name pointed at 127.0.0.1 sends its own Host and Origin.
    rebound = f"evil.example:{app.port}"
    r = requests.get(f"{app.url}/config", headers={"Host": rebound, "Origin": f"http://{rebound}"}, timeout=30)
    assert r.status_code == 403 and "components" not in r.text


@pytest.mark.parametrize("how", ["absolute", "relative"])
def test_files_under_the_start_folder_are_not_served(app, how):
    path = str(app.secret) if how == "absolute" else app.secret.name
    r = requests.get(f"{app.url}/file={path}", timeout=30)
    assert r.status_code in (403, 404)
    assert "private notes" not in r.text


@pytest.mark.browser
def test_the_page_works_in_a_browser_and_shows_images(app, browser_page, tmp_path):
    # Same-origin use is untouched: the queue's websocket runs a handler and the gallery's images, copies in
    # gradio's temp folder, load through /file=.
    from PIL import Image

    from embed_studio.ui.dataset_tab import DatasetTab

    for i, color in enumerate(("red", "blue")):
        Image.new("RGB", (48, 32), color).save(tmp_path / f"img{i}.png")
        (tmp_path / f"img{i}.txt").write_text("1girl, solo", encoding="utf-8")
    page = browser_page
    page.goto(app.url)
    page.locator("#es-tabs > .tab-nav button", has_text=DatasetTab.title).first.click()
    page.locator("#es-dataset-folder textarea").fill(str(tmp_path))
    page.locator("#es-dataset-open").click()
    page.locator("#es-dataset-status").first.get_by_text("2 images").wait_for()
    page.wait_for_function(
        "() => { const imgs = [...document.querySelectorAll('#es-dataset-gallery img')];"
        " return imgs.length === 2 && imgs.every(i => i.complete && i.naturalWidth === 48); }"
    )
    sources = page.locator("#es-dataset-gallery img").evaluate_all("imgs => imgs.map(i => i.src)")
    assert all("/file=" in src for src in sources), sources
