"""The standalone app's web stack: a step longer than httpx's 5 s default still reaches the page.

With httpx 0.25+ gradio 3.41.2's queue times out on its own request to the handler after 5 s ("'AsyncRequest'
object has no attribute '_json_response_data'" in the log): the handler finishes, the browser never hears. The
standalone extra pins the WebUI's web stack (httpx 0.24.1) so a real checkpoint's first load does not hang the page.
"""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.browser

# Longer than httpx's default 5 s timeout, which is what the queue's request to the handler ran into.
SLOW_STEP_SECONDS = 6.5


def _slow_step(text: str) -> str:
    # The step's own length is what this test is about (a model load that takes more than 5 s), not a way
    # to wait for something: the browser side waits on the result text, whatever the duration.
    started = time.monotonic()
    time.sleep(SLOW_STEP_SECONDS)
    return f"done: {text} after {time.monotonic() - started:.1f} s"


def test_a_step_longer_than_five_seconds_reaches_the_page(serve_blocks, browser_page):
    import gradio as gr

    with gr.Blocks(analytics_enabled=False) as blocks:
        source = gr.Textbox(value="zangoose", elem_id="es-slow-in")
        button = gr.Button("Go", elem_id="es-slow-go")
        result = gr.Textbox(elem_id="es-slow-out")
        button.click(_slow_step, inputs=[source], outputs=[result])  # queued, as every long step is
    browser_page.goto(serve_blocks(blocks))
    browser_page.locator("#es-slow-go").click()
    browser_page.wait_for_function(
        "() => (document.querySelector('#es-slow-out textarea') || {}).value?.startsWith('done: zangoose')",
        timeout=30_000,
    )
    assert browser_page.locator("#es-slow-out textarea").input_value().startswith("done: zangoose after ")
