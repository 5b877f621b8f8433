"""In the real WebUI, in a browser: the Train tab's previews read their parameters from the txt2img tab when the
box is ticked (like the WebUI's own Train tab), and use the form's own preview settings when it is not."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.webui, pytest.mark.browser]

TRAIN_TIMEOUT_MS = 300_000  # a safety net against a hung run, not a timing assertion


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(2)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / f"img{i}.png")
        (tmp_path / f"img{i}.txt").write_text("zangoose_(pokemon), red eyes, solo", encoding="utf-8")
    return tmp_path


def _infotext(path) -> str:
    with Image.open(path) as image:
        return image.info.get("parameters", "")


def _train_to(panel, max_steps: int) -> None:
    """A small run (batch 2, 64x64 area, 32-pixel buckets) with a preview at its last step."""
    for field, value in (("batch-size", 2), ("grad-accum", 1), ("max-steps", max_steps), ("preview-every", 2)):
        panel.fill(f"es-train-{field}", value)
    panel.fill("es-train-width", 64)
    panel.fill("es-train-height", 64)
    panel.fill("es-train-bucket-step", 32)
    panel.page.locator("#es-train-start").click()


def test_previews_read_the_txt2img_tab_when_ticked(webui, train_panel, dataset, name):
    panel, page = train_panel, train_panel.page
    page.goto(webui.url)
    # txt2img as a user leaves it: a prompt with the embedding, a negative prompt, steps, size, CFG and seed.
    page.locator("#tabs > .tab-nav button", has_text="txt2img").first.click()
    prompt = f"{name}, red eyes, from txt2img"
    page.locator("#txt2img_prompt textarea").fill(prompt)
    page.locator("#txt2img_neg_prompt textarea").fill("blurry, lowres")
    for slider, value in (("txt2img_steps", 3), ("txt2img_width", 96), ("txt2img_height", 64)):
        page.locator(f"#{slider} input[type=number]").fill(str(value))
    page.locator("#txt2img_cfg_scale input[type=number]").fill("5.5")
    page.locator("#txt2img_seed input").first.fill("1234")

    page.locator("#tabs > .tab-nav button", has_text="Embed Studio").first.click(timeout=120_000)
    page.locator("#es-tabs > .tab-nav button", has_text="Train").first.click()
    panel.fill("es-train-dataset", dataset)
    panel.fill("es-train-emb-name", name)
    panel.fill("es-train-emb-init", "red eyes")
    page.locator("#es-train-emb-create").click()
    panel.wait_text("es-train-emb-status", "Created")
    panel.open_subtab("Train")
    page.locator("#es-train-advanced").get_by_text("Advanced").first.click()
    page.locator("#es-train-previews").get_by_text("Previews").first.click()
    # The form's own preview settings, which the ticked box overrides.
    panel.fill("es-train-preview-prompt", f"form prompt, {name}")
    panel.fill("es-train-preview-steps", 2)
    box = page.locator("#es-train-preview-from-txt2img input[type=checkbox]")
    box.check()
    # Preview scoring in the WebUI too: the Tagger panel's kind of model, a folder here.
    page.locator("#es-train-preview-scoring").get_by_text("Preview scoring").first.click()
    page.locator("#es-train-preview-score input[type=checkbox]").check()
    tagger = page.locator("#es-train-score-tagger input").first
    tagger.fill(str(webui.tagger.folder))
    tagger.press("Enter")
    _train_to(panel, 2)
    panel.wait_text("es-train-status", "Done:", timeout=TRAIN_TIMEOUT_MS)

    run = webui.dir / "textual_inversion" / name
    preview = run / "images" / f"{name}-2.png"
    info = _infotext(preview)
    assert Image.open(preview).size == (96, 64)
    assert info.startswith(prompt + "\nNegative prompt: blurry, lowres\n"), info
    for part in ("Steps: 3", "Sampler: DPM++ 2M", "CFG scale: 5.5", "Seed: 1234", "Size: 96x64"):
        assert part in info, info
    recorded = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert (recorded["preview_prompt"], recorded["preview_sampler"], recorded["preview_seed"]) == (
        prompt, "dpmpp_2m", 1234,
    )  # fmt: skip
    assert (recorded["preview_width"], recorded["preview_height"], recorded["preview_steps"]) == (96, 64, 3)
    # The preview was scored against the dataset's character tags, and the panel's plot has the score panel under
    # the loss (700x525 instead of 700x350).
    rows = [json.loads(line) for line in (run / "preview_scores.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in rows] == [2] and sorted(rows[0]["tags"]) == ["red eyes", "zangoose (pokemon)"]
    assert rows[0]["previews"][0]["image"] == preview.name
    page.wait_for_function(
        "() => document.querySelector('#es-train-loss img[src^=\"data:image\"]')?.naturalHeight === 525"
    )

    # Unticked: the form's own preview prompt, steps and the training size.
    box.uncheck()
    _train_to(panel, 4)
    panel.wait_text("es-train-status", "is at step 4 (2 this run)", timeout=TRAIN_TIMEOUT_MS)
    preview = run / "images" / f"{name}-4.png"
    info = _infotext(preview)
    assert Image.open(preview).size == (64, 64)
    assert info.startswith(f"form prompt, {name}\n") and "Steps: 2" in info and "Size: 64x64" in info, info
    assert "from txt2img" not in info and "blurry" not in info


def _pick(page, elem_id: str, choice: str) -> None:
    """Choose `choice` (exactly) in a gradio 3 dropdown."""
    page.locator(f"#{elem_id} input").first.click()
    exact = re.compile(r"^\W*" + re.escape(choice) + r"\s*$")
    page.locator("ul.options li", has_text=exact).first.click()
    page.wait_for_function(
        "([id, v]) => document.querySelector('#' + id + ' input')?.value === v", arg=[elem_id, choice]
    )


def test_the_txt2img_sampler_and_schedule_type_are_read_as_they_are(webui, train_panel, dataset, name):
    """txt2img's sampler and schedule type beyond the four the previews used to draw with, read back and drawn."""
    panel, page = train_panel, train_panel.page
    page.goto(webui.url)
    page.locator("#tabs > .tab-nav button", has_text="txt2img").first.click()
    page.locator("#txt2img_prompt textarea").fill(f"{name}, red eyes")
    page.locator("#txt2img_steps input[type=number]").fill("3")
    page.locator("#txt2img_seed input").first.fill("77")
    _pick(page, "txt2img_sampling", "DPM++ 2M SDE")
    _pick(page, "txt2img_scheduler", "Exponential")

    page.locator("#tabs > .tab-nav button", has_text="Embed Studio").first.click(timeout=120_000)
    page.locator("#es-tabs > .tab-nav button", has_text="Train").first.click()
    panel.fill("es-train-dataset", dataset)
    panel.fill("es-train-emb-name", name)
    panel.fill("es-train-emb-init", "red eyes")
    page.locator("#es-train-emb-create").click()
    panel.wait_text("es-train-emb-status", "Created")
    panel.open_subtab("Train")
    page.locator("#es-train-advanced").get_by_text("Advanced").first.click()
    page.locator("#es-train-previews").get_by_text("Previews").first.click()
    # The form offers the WebUI's own samplers and schedule types, not the four of before.
    _pick(page, "es-train-preview-sampler", "dpmpp_3m_sde")
    _pick(page, "es-train-preview-scheduler", "Align Your Steps")
    page.locator("#es-train-preview-from-txt2img input[type=checkbox]").check()
    _train_to(panel, 2)
    panel.wait_text("es-train-status", "Done:", timeout=TRAIN_TIMEOUT_MS)

    run = webui.dir / "textual_inversion" / name
    info = _infotext(run / "images" / f"{name}-2.png")
    for part in ("Steps: 3", "Sampler: DPM++ 2M SDE", "Schedule type: Exponential", "Seed: 77"):
        assert part in info, info
    recorded = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert (recorded["preview_sampler"], recorded["preview_scheduler"]) == ("dpmpp_2m_sde", "Exponential")
