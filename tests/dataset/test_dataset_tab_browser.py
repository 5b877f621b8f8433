"""The Dataset panel in a real browser: open, delete a tag everywhere, save, restore; unsaved edits guarded."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

JS_DIR = Path(__file__).resolve().parents[2] / "javascript"


def texts(folder):
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.txt"))}


@pytest.fixture
def panel_url(serve_blocks, tmp_path):
    import gradio as gr

    from embed_studio.ui.dataset_tab import DatasetTab
    from embed_studio.ui.host import UiHost

    host = UiHost(name="standalone", models_dir=tmp_path / "models", output_dir=tmp_path / "out")
    with gr.Blocks(analytics_enabled=False) as demo:
        tab = DatasetTab(host)
        tab.create_ui()
        tab.set_callbacks({DatasetTab.elem_id: tab})
    return serve_blocks(demo)


def add_extension_scripts(page) -> None:
    """The WebUI loads javascript/*.js itself, in name order; the bare Blocks does not."""
    for js in sorted(JS_DIR.glob("*.js")):
        page.add_script_tag(path=str(js))


def open_folder(page, url: str, folder, images: int):
    """Open `folder` in the panel; the status line, once it counts the images."""
    page.goto(url)
    status = page.locator("#es-dataset-status").first
    page.locator("#es-dataset-folder textarea").fill(str(folder))
    page.locator("#es-dataset-open").click()
    status.get_by_text(f"{images} images").wait_for()
    return status


def test_open_delete_everywhere_save_restore(panel_url, browser_page, dataset):
    page = browser_page
    before = texts(dataset)
    page.goto(panel_url)
    add_extension_scripts(page)
    status = page.locator("#es-dataset-status").first

    page.locator("#es-dataset-folder textarea").fill(str(dataset))
    page.locator("#es-dataset-open").click()
    status.get_by_text("5 images").wait_for()
    page.locator("#es-dataset-table").get_by_text("blue hair").first.wait_for()
    assert page.locator("#es-dataset-gallery img").count() == 5

    page.locator("#es-dataset-selected textarea").fill("blue hair")
    page.locator("#es-dataset-delete").click()
    status.get_by_text("3 unsaved").wait_for()
    assert page.evaluate("window.embedStudioDatasetDirty()") is True
    assert texts(dataset) == before  # nothing on disk before Save

    # Undo and redo, from the keyboard (outside text fields).
    page.locator("#es-dataset-page").first.click()
    page.keyboard.press("Control+z")
    page.wait_for_function("() => !window.embedStudioDatasetDirty()")
    page.locator("#es-dataset-table").get_by_text("blue hair").first.wait_for()
    page.keyboard.press("Control+y")
    status.get_by_text("3 unsaved").wait_for()

    page.locator("#es-dataset-save").click()
    status.get_by_text("Saved 3 caption(s)").wait_for()
    assert page.evaluate("window.embedStudioDatasetDirty()") is False
    after = texts(dataset)
    assert after != before and not any("blue hair" in t for t in after.values())

    page.locator("#es-dataset-restore").click()
    status.get_by_text("Restored 3 caption(s)").wait_for()
    assert texts(dataset) == before


def test_unsaved_edits_ask_before_reopen_and_unload(panel_url, browser_page, dataset):
    from playwright.sync_api import Error as PlaywrightError

    page = browser_page
    page.goto(panel_url)
    add_extension_scripts(page)
    status = page.locator("#es-dataset-status").first
    page.locator("#es-dataset-folder textarea").fill(str(dataset))
    page.locator("#es-dataset-open").click()
    status.get_by_text("5 images").wait_for()
    # Filter the gallery, pick a tag from the table, delete it from the filtered images only.
    page.locator("#es-dataset-has textarea").fill("gloves")
    page.locator("#es-dataset-filter").click()
    page.locator("#es-dataset-page").first.get_by_text("2 images").wait_for()
    assert page.locator("#es-dataset-gallery img").count() == 2
    page.locator("#es-dataset-table").get_by_text("solo", exact=True).first.click()
    page.wait_for_function("() => document.querySelector('#es-dataset-selected textarea').value === 'solo'")
    page.locator("#es-dataset-scope").get_by_text("Filtered images").click()
    page.locator("#es-dataset-delete").click()
    status.get_by_text("1 unsaved").wait_for()
    assert "solo" in (dataset / "name (1).txt").read_text(encoding="utf-8")

    # Re-open with unsaved edits: the browser asks; cancelling keeps them.
    asked = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    page.locator("#es-dataset-open").click()
    status.get_by_text("Save them first").wait_for()
    assert asked and "not saved" in asked[0]
    assert "1 unsaved" in status.inner_text()

    # Leaving the page: the beforeunload handler asks (the browser shows its own "Leave site?" dialog).
    prevented = page.evaluate(
        "() => { const e = new Event('beforeunload', {cancelable: true}); window.dispatchEvent(e); return e.defaultPrevented; }"
    )
    assert prevented is True
    kinds = []
    page.on("dialog", lambda d: (kinds.append(d.type), d.dismiss()))
    page.locator("#es-dataset-filter").click()  # a user gesture, which Chromium needs before it asks
    try:
        page.goto("about:blank", timeout=3000)
    except PlaywrightError:
        pass  # dismissing the dialog cancels the navigation
    assert kinds == ["beforeunload"]
    assert "1 unsaved" in status.inner_text()

    # Once saved, nothing asks.
    page.locator("#es-dataset-save").click()
    status.get_by_text("Saved 1 caption(s)").wait_for()
    assert (dataset / "a b.txt").read_text(encoding="utf-8") == "1girl, blue hair, smile, gloves"
    assert "solo" in (dataset / "name (1).txt").read_text(encoding="utf-8")
    assert (
        page.evaluate(
            "() => { const e = new Event('beforeunload', {cancelable: true}); window.dispatchEvent(e); return e.defaultPrevented; }"
        )
        is False
    )


def test_image_operations_run_as_jobs_and_restore(panel_url, browser_page, tmp_path, noise):
    folder = tmp_path / "imgs"
    folder.mkdir()
    noise(1, (96, 96)).save(folder / "a.png")
    (folder / "a copy.png").write_bytes((folder / "a.png").read_bytes())
    noise(2, (96, 96)).save(folder / "b.png")
    page = browser_page
    status = open_folder(page, panel_url, folder, 3)
    page.get_by_role("button", name="Images").first.click()

    page.locator("#es-dataset-find-dups").click()
    page.get_by_text("1 duplicate(s)").wait_for()
    assert len(list(folder.glob("*.png"))) == 3  # a preview: nothing moved yet
    page.locator("#es-dataset-remove-dups").click()
    status.get_by_text("2 images").wait_for()
    assert len(list(folder.glob("*.png"))) == 2

    page.locator("#es-dataset-restore-images").click()
    status.get_by_text("3 images").wait_for()
    assert len(list(folder.glob("*.png"))) == 3

    page.locator("#es-dataset-flip").click()
    status.get_by_text("6 images").wait_for()
    page.locator("#es-dataset-image-status").first.get_by_text("flip: changed 3 image(s)").wait_for()
    assert (folder / "b-flipped.png").exists()


def test_autocomplete_from_a_booru_tag_list(panel_url, browser_page, dataset, tmp_path):
    taglist = tmp_path / "danbooru.csv"
    taglist.write_text("nsfw_mark,0,10\nnsfw,9,5000\nblue_hair,0,900\n", encoding="utf-8")
    page = browser_page
    page.goto(panel_url)
    status = page.locator("#es-dataset-status").first
    page.locator("#es-dataset-folder textarea").fill(str(dataset))
    page.locator("#es-dataset-open").click()
    status.get_by_text("5 images").wait_for()
    page.get_by_text("Booru tag list for autocomplete").click()
    page.get_by_label("Tag list (.csv as used by tag autocomplete, or .txt)").fill(str(taglist))
    page.get_by_role("button", name="Load", exact=True).click()
    status.get_by_text("Loaded 3 booru tags").wait_for()

    page.locator("#es-dataset-replacement textarea").fill("nsf")
    box = page.locator("#es-dataset-complete input")
    box.click()
    options = page.locator("#es-dataset-complete [data-testid='dropdown-option']")
    options.first.wait_for()
    assert [options.nth(i).get_attribute("data-value") for i in range(options.count())] == ["nsfw", "nsfw mark"]
    options.first.click()  # the most used booru tag comes first
    page.wait_for_function("() => document.querySelector('#es-dataset-replacement textarea').value === 'nsfw'")


def test_normalize_button_previews_saves_and_restores(panel_url, browser_page, build, tmp_path):
    folder = build(
        tmp_path / "mixed",
        {
            "1.png": r"o o, kiana kaslana \(honkai\)",
            "2.png": "o_o, kiana kaslana (honkai)",
            "3.png": "Kiana_Kaslana_(honkai)",
        },
    )
    before = texts(folder)
    page = browser_page
    status = open_folder(page, panel_url, folder, 3)
    status.get_by_text("2 tags").wait_for()  # one row per tag, whatever its spelling

    page.locator("#es-dataset-normalize").click()
    status.get_by_text("normalize tag spelling: 2 caption(s) changed (not saved yet)").wait_for()
    assert texts(folder) == before  # the preview is the table and gallery; nothing written before Save
    page.locator("#es-dataset-save").click()
    status.get_by_text("Saved 2 caption(s)").wait_for()
    assert set(texts(folder).values()) == {"o_o, kiana kaslana (honkai)", "kiana kaslana (honkai)"}
    page.locator("#es-dataset-restore").click()
    status.get_by_text("Restored 2 caption(s)").wait_for()
    assert texts(folder) == before
