"""The Train panel's embedding analytics: norms over saved steps, nearest tokens and the init text, on a real tab."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embed_studio.backends.provider import StandaloneProvider
from embed_studio.formats.embedding import load_embedding, save_embedding
from embed_studio.jobs import JobRegistry
from embed_studio.ui.host import UiHost

BLUE, ORANGE = (31, 119, 180), (255, 127, 14)  # matplotlib's first two line colours: vector 1 and vector 2


def _tab(tmp_path, provider):
    import gradio as gr

    from embed_studio.ui.train_tab import TrainTab

    host = UiHost(
        name="standalone", models_dir=tmp_path, output_dir=tmp_path, jobs=JobRegistry(), backend_provider=provider
    )
    with gr.Blocks():
        tab = TrainTab(host)
        tab.create_ui()
        tab.set_callbacks({TrainTab.elem_id: tab})
    return tab


def _pixels(image, rgb, tolerance=60) -> int:
    pixels = np.asarray(image.convert("RGBA")).astype(int)
    near = np.abs(pixels[..., :3] - np.array(rgb)).sum(axis=-1) < tolerance
    return int((near & (pixels[..., 3] > 128)).sum())


@pytest.fixture
def trained(tmp_path, tiny_model, train_dataset, one_thread):
    """A 2-vector embedding trained 3 steps with a copy saved every step, through the provider the tab uses."""
    from embed_studio.train.config import TrainConfig
    from embed_studio.train.create import create_embedding
    from embed_studio.train.loop import train

    provider = StandaloneProvider(tmp_path / "out", device="cpu")
    provider.embeddings_dir.mkdir(parents=True)
    target = provider.embeddings_dir / "mychar.pt"
    with provider.session(str(tiny_model)) as backend:
        save_embedding(create_embedding(backend, "mychar", "black hair", 2), target)
        config = TrainConfig(
            kind="embedding", model=str(tiny_model), dataset=str(train_dataset), target=str(target), lr="0.05",
            grad_accum=1, max_steps=3, width=64, height=64, bucket_step=32, save_every=1, preview_every=0,
            log_dir=str(provider.log_dir / "mychar"),
        )  # fmt: skip
        train(config, backend)
    return provider, target


def test_before_a_run_loads_the_model_the_panel_shows_the_norms_and_says_what_is_missing(tmp_path, tiny_model):
    from embed_studio.backends.standalone import StandaloneBackend
    from embed_studio.train.create import create_embedding
    from embed_studio.ui.train_analytics import NO_MODEL

    provider = StandaloneProvider(tmp_path / "out", device="cpu")
    provider.embeddings_dir.mkdir(parents=True)
    data = create_embedding(StandaloneBackend.load(tiny_model, "cpu"), "fresh", "black hair", 2)
    save_embedding(data, provider.embeddings_dir / "fresh.pt")
    tab = _tab(tmp_path, provider)
    image, text = tab.analytics.show("embedding", "fresh.pt")
    assert image is not None and _pixels(image, BLUE) > 0 and _pixels(image, ORANGE) > 0
    assert NO_MODEL in text and "'black hair'" in text
    for i, norm in enumerate(data.vectors.norm(dim=-1).tolist(), 1):
        assert f"| {i} | {norm:.4f} | — |" in text
    assert "as the run saves copies" in text  # one point so far


def test_after_a_run_the_panel_plots_every_saved_step_and_names_the_nearest_tokens(tmp_path, trained):
    provider, target = trained
    tab = _tab(tmp_path, provider)
    image, text = tab.analytics.show("embedding", "mychar.pt", "", "")
    saved = load_embedding(target)
    assert saved.step == 3
    assert "'black hair' is 2 token(s) for 2 vector(s): one token per vector" in text
    # The nearest token of each vector, found here by cosine similarity against the model's token table.
    table = provider.loaded_backend().text_encoder.get_input_embeddings().weight.detach()
    tokenizer = provider.loaded_backend().tokenizer
    for i, vector in enumerate(saved.vectors, 1):
        similarity = torch.nn.functional.cosine_similarity(table, vector[None, :].float(), dim=-1)
        best = tokenizer.convert_ids_to_tokens(int(similarity.argmax())).replace("</w>", "")
        row = next(line for line in text.splitlines() if line.startswith(f"| {i} |"))
        assert f"| {float(vector.norm()):.4f} |" in row and row.split("|")[3].strip().startswith(best), row
    # Transparent (it sits on the light and the dark theme), a line per vector, the last step's norms in its title.
    pixels = np.asarray(image)
    assert image.mode == "RGBA" and pixels[0, 0, 3] == 0
    assert _pixels(image, BLUE) > 50 and _pixels(image, ORANGE) > 50
    assert "as the run saves copies" not in text


def test_three_saved_steps_draw_three_points_per_vector(trained):
    from embed_studio.train.analytics import norm_history

    provider, target = trained
    copies = sorted((provider.log_dir / "mychar" / "embeddings").glob("*.pt"))
    assert [p.name for p in copies] == ["mychar-1.pt", "mychar-2.pt"]
    history = norm_history([*copies, target])
    assert [row["step"] for row in history] == [1, 2, 3]
    norms = [[round(float(n), 4) for n in load_embedding(p).vectors.norm(dim=-1)] for p in [*copies, target]]
    assert [row["norms"] for row in history] == norms
    assert len({tuple(n) for n in norms}) == 3  # the norms moved: the plot has something to show


def test_a_hypernetwork_or_a_missing_file_is_said_not_shown(tmp_path):
    provider = StandaloneProvider(tmp_path / "out", device="cpu")
    provider.embeddings_dir.mkdir(parents=True)
    tab = _tab(tmp_path, provider)
    assert tab.analytics.show("hypernetwork", "x.pt")[1].startswith("Analytics are for embeddings")
    image, text = tab.analytics.show("embedding", "nothing.pt")
    assert image is None and "does not exist yet" in text
    image, text = tab.analytics.show("embedding", "../outside.pt")
    assert image is None and "'..'" in text


@pytest.mark.browser
def test_in_the_page_picking_the_file_and_refresh_show_the_analytics(tmp_path, trained, serve_blocks, train_panel):
    import gradio as gr

    from embed_studio.ui.train_tab import TrainTab

    provider, target = trained
    host = UiHost(
        name="standalone", models_dir=tmp_path, output_dir=tmp_path, jobs=JobRegistry(), backend_provider=provider
    )
    with gr.Blocks(analytics_enabled=False) as demo:
        tab = TrainTab(host)
        tab.create_ui()
        tab.set_callbacks({TrainTab.elem_id: tab})
    page = train_panel.page
    page.goto(serve_blocks(demo))
    train_panel.open_subtab("Train")
    page.locator("#es-train-analytics").get_by_text("What the embedding learned").first.click()
    page.locator("#es-train-target input").first.fill("mychar.pt")
    page.locator("#es-train-target input").first.press("Enter")
    text = train_panel.wait_text("es-train-analytics-text", "one token per vector")
    assert "nearest tokens (cosine)" in text
    page.wait_for_function("() => !!document.querySelector('#es-train-analytics-norms img')")
    assert "as the run saves copies" not in page.locator("#es-train-analytics-text").last.inner_text()
    rows = page.locator("#es-train-analytics-text table tr")
    assert rows.count() == 3  # the header and one row per vector
    # Refresh reads the folder again: with the saved copies gone only the file's own step is left.
    for copy in (provider.log_dir / "mychar" / "embeddings").iterdir():
        copy.unlink()
    page.locator("#es-train-analytics-refresh").click()
    train_panel.wait_text("es-train-analytics-text", "as the run saves copies")


@pytest.mark.browser
def test_the_analytics_follow_a_run_when_it_ends(
    tmp_path, tiny_model, train_dataset, serve_blocks, train_panel, one_thread
):
    import gradio as gr

    from embed_studio.backends.standalone import StandaloneBackend
    from embed_studio.train.create import create_embedding
    from embed_studio.ui.train_tab import TrainTab

    provider = StandaloneProvider(tmp_path / "out", device="cpu")
    provider.embeddings_dir.mkdir(parents=True)
    data = create_embedding(StandaloneBackend.load(tiny_model, "cpu"), "runner", "black hair", 2)
    save_embedding(data, provider.embeddings_dir / "runner.pt")
    host = UiHost(
        name="standalone", models_dir=tmp_path, output_dir=tmp_path, jobs=JobRegistry(), backend_provider=provider
    )
    with gr.Blocks(analytics_enabled=False) as demo:
        tab = TrainTab(host)
        tab.create_ui()
        tab.set_callbacks({TrainTab.elem_id: tab})
    page = train_panel.page
    page.goto(serve_blocks(demo))
    train_panel.fill("es-train-model", tiny_model)
    train_panel.fill("es-train-dataset", train_dataset)
    train_panel.open_subtab("Train")
    page.locator("#es-train-analytics").get_by_text("What the embedding learned").first.click()
    page.locator("#es-train-target input").first.fill("runner.pt")
    page.locator("#es-train-target input").first.press("Enter")
    train_panel.wait_text("es-train-analytics-text", "as the run saves copies")  # step 0: one point, no model yet
    train_panel.fill("es-train-save-every", 1)
    train_panel.start_small_run(max_steps=3, preview_every=0)
    train_panel.wait_text("es-train-status", "Done", timeout=240_000)
    text = train_panel.wait_text("es-train-analytics-text", "one token per vector", timeout=60_000)
    assert "as the run saves copies" not in text and "—" not in text  # saved steps plotted, nearest tokens named


def test_a_host_that_lends_no_model_points_to_the_cli_for_the_vocabulary(tmp_path, trained):
    from embed_studio.ui.train_analytics import NO_VOCABULARY

    provider, target = trained

    class WebUiLike(StandaloneProvider):
        loaded_backend = None  # the WebUI lends its model for a run only

    lender = WebUiLike(provider.log_dir.parent, device="cpu")
    image, text = _tab(tmp_path, lender).analytics.show("embedding", "mychar.pt")
    assert NO_VOCABULARY in text and "| 1 |" in text and image is not None
