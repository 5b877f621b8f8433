"""The standalone app with two browser tabs during a run: the second stays usable, is refused at once and shows the run."""

from __future__ import annotations

import pytest

from embed_studio.backends.provider import StandaloneProvider
from embed_studio.jobs import JobRegistry
from embed_studio.ui.host import UiHost


def _studio(host):
    import gradio as gr

    from embed_studio.ui.train_tab import TrainTab

    with gr.Blocks(analytics_enabled=False) as demo:
        tab = TrainTab(host)
        tab.create_ui()
        tab.set_callbacks({TrainTab.elem_id: tab})
    return demo


def test_resume_with_no_file_says_so_in_the_status_line(tmp_path):
    import gradio as gr

    from embed_studio.ui.train_tab import TrainTab

    provider = StandaloneProvider(tmp_path / "out")
    host = UiHost(name="standalone", models_dir=tmp_path, output_dir=tmp_path, backend_provider=provider)
    with gr.Blocks():
        tab = TrainTab(host)
        tab.create_ui()
    ok, line, *rest = tab._load_saved_run("embedding", "")
    assert ok is False and line.startswith("**Cannot resume:** Pick the file to train")
    assert len(rest) == 3 + len(tab.fields)
    assert list(tab._resume(False)) == [tuple(gr.update() for _ in range(6))]  # nothing starts


@pytest.mark.browser
def test_a_second_tab_during_a_run(
    tmp_path, serve_standalone, browser_page, train_panel, tiny_model, train_dataset, one_thread
):
    from embed_studio.formats.embedding import load_embedding

    provider = StandaloneProvider(tmp_path / "out", device="cpu")
    host = UiHost(
        name="standalone", models_dir=tmp_path / "models", output_dir=tmp_path / "out", jobs=JobRegistry(),
        backend_provider=provider,
    )  # fmt: skip
    url = serve_standalone(_studio(host))
    first = train_panel
    first.page.goto(url)
    first.fill("es-train-model", tiny_model)
    first.fill("es-train-dataset", train_dataset)
    first.fill("es-train-emb-name", "mychar")
    first.fill("es-train-emb-init", "black hair")
    first.fill("es-train-emb-vectors", 2)
    first.page.locator("#es-train-emb-create").click()
    first.wait_text("es-train-emb-status", "Created")
    first.page.wait_for_selector("#es-train-start", state="visible")  # Create opened the Train sub-tab itself
    first.start_small_run(max_steps=100000, preview_every=0)  # runs until interrupted
    first.page.wait_for_function(
        "() => [...document.querySelectorAll('#es-train-status')].some(e => /step [1-9]\\d*\\/\\d+ · loss/.test(e.innerText))",
        timeout=90_000,  # the model loads and the latents are cached first, on a shared machine
    )

    first.wait_text("es-train-status", "Last prompt: ")  # the WebUI's "Last prompt", under the step line
    # A second tab while the first one follows the run: it opens with the run named and its settings in the form.
    second = type(first)(first.page.context.browser.new_page(viewport={"width": 1400, "height": 1000}))
    second.page.set_default_timeout(20_000)
    second.page.goto(url)
    text = second.wait_text("es-train-status", "A training run is going")
    assert "(mychar.pt)" in text
    second.open_subtab("Train")
    second.page.wait_for_function(
        "() => document.querySelector('#es-train-max-steps input').value === '100000'"
    )  # fmt: skip
    assert second.page.locator("#es-train-batch-size input").first.input_value() == "2"
    assert second.page.locator("#es-train-dataset textarea").first.input_value() == str(train_dataset)
    assert second.page.locator("#es-train-model textarea").first.input_value() == str(tiny_model)
    assert second.page.locator("#es-train-target input").first.input_value() == "mychar.pt"

    # Train there is refused at once, naming the run, while the first tab still follows it.
    second.page.locator("#es-train-start").click()
    text = second.wait_text("es-train-status", "Not started", timeout=30_000)
    assert "training run train-" in text and "(mychar.pt) is going" in text
    assert host.jobs.active("train")

    # Resume with no file picked: one line in the status, no error badges, nothing started.
    second.page.locator("#es-train-target input").first.fill("")
    second.page.locator("#es-train-resume").click()
    second.wait_text("es-train-status", "Cannot resume: Pick the file to train", timeout=30_000)
    assert second.page.get_by_text("Error", exact=True).count() == 0

    first.page.locator("#es-train-interrupt").click()
    first.wait_text("es-train-status", "Interrupted")
    assert load_embedding(provider.embeddings_dir / "mychar.pt").step >= 1
    second.page.close()
