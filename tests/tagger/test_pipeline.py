"""Tagging a folder end to end with real onnxruntime sessions on tiny WD-shaped models."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from tagger_test_models import BLUE, GREEN, RED, Z3D_TAGS, build_tagger

from embed_studio.dataset.folder import read_caption
from embed_studio.errors import DatasetError
from embed_studio.jobs import CANCELLED, DONE
from embed_studio.tagger.model import loaded_models, unload_models
from embed_studio.tagger.options import TaggerOptions
from embed_studio.tagger.pipeline import TagRequest, make_tag_job, tag_folder


@pytest.fixture
def square_dataset(tmp_path, make_image):
    folder = tmp_path / "data"
    for name, color in (("red.png", RED), ("green.png", GREEN), ("blue.png", BLUE)):
        make_image(name, size=(32, 32), color=color, folder=folder)
    return folder


def run(folder, model_folder, tmp_path, **kwargs):
    return tag_folder(TagRequest(folder=folder, model=str(model_folder), models_dir=tmp_path / "cache", **kwargs))


def the_model():
    (model,) = loaded_models()
    return model


def test_every_image_gets_its_own_caption(square_dataset, tiny_tagger, tmp_path):
    summary = run(square_dataset, tiny_tagger.folder, tmp_path)
    assert (summary.written, summary.skipped, len(summary.failed)) == (3, 0, 0)
    red, green, blue = (read_caption(square_dataset / n).split(", ") for n in ("red.png", "green.png", "blue.png"))
    assert "red theme" in red and "kiana (honkai)" in red and "blue theme" not in red
    assert "hatsune miku" in blue and "red theme" not in blue
    assert "green theme" in green and not {"hatsune miku", "kiana (honkai)"} & set(green)
    assert "^_^" in red  # kaomoji keep their underscore
    assert summary.provider == "CPUExecutionProvider"
    counts = summary.tag_counts()
    assert counts["solo"] == 3 and counts["hatsune miku"] == 1


def test_dynamic_batch_batches_and_fixed_batch_runs_one_by_one(square_dataset, tmp_path):
    dynamic = build_tagger(tmp_path / "dyn")
    assert run(square_dataset, dynamic.folder, tmp_path, batch_size=2, use_cache=False).runs == 2
    fixed = build_tagger(tmp_path / "fixed", batch=1)
    summary = run(square_dataset, fixed.folder, tmp_path, batch_size=8, use_cache=False, on_existing="overwrite")
    # Same captions as the dynamic model wrote: nothing to change, but every image was inferred.
    assert (summary.runs, summary.inferred, summary.count("unchanged")) == (3, 3, 3)


def test_unreadable_files_are_listed_and_skipped(square_dataset, tiny_tagger, tmp_path):
    (square_dataset / "broken.png").write_bytes(b"not an image at all")
    good = (square_dataset / "red.png").read_bytes()
    (square_dataset / "truncated.jpg").write_bytes(good[:40])
    summary = run(square_dataset, tiny_tagger.folder, tmp_path)
    assert sorted(r.path.name for r in summary.failed) == ["broken.png", "truncated.jpg"]
    assert all("skipped" in r.error for r in summary.failed)
    assert summary.written == 3
    assert read_caption(square_dataset / "broken.png") is None


def test_any_image_pillow_opens(tmp_path, tiny_tagger):
    folder = tmp_path / "odd"
    folder.mkdir()
    Image.new("CMYK", (32, 32), (0, 200, 200, 0)).save(folder / "cmyk.jpg")
    Image.new("I;16", (32, 32), 40000).save(folder / "sixteen.png")
    Image.new("RGB", (32, 32), BLUE).convert("P").save(folder / "palette.gif")
    Image.new("LA", (32, 20), (90, 255)).save(folder / "grey_alpha.png")
    Image.new("RGBA", (20, 32), (*GREEN, 255)).save(folder / "alpha.webp")
    summary = run(folder, tiny_tagger.folder, tmp_path)
    assert summary.failed == []
    assert summary.written == 5
    assert "red theme" in read_caption(folder / "cmyk.jpg")  # CMYK (0,200,200,0) is red
    assert "hatsune miku" in read_caption(folder / "palette.gif")


def test_transparency_is_composited_on_white(tmp_path, tiny_tagger, make_image):
    folder = tmp_path / "alpha"
    make_image("clear.png", size=(32, 32), mode="RGBA", color=(*RED, 0), folder=folder)
    run(folder, tiny_tagger.folder, tmp_path)
    caption = read_caption(folder / "clear.png")
    # White lights every colour channel; on black (or the hidden red) these would not all appear.
    assert {"red theme", "green theme", "blue theme"} <= set(caption.split(", "))


def test_rerun_with_other_options_infers_nothing(square_dataset, tiny_tagger, tmp_path):
    first = run(square_dataset, tiny_tagger.folder, tmp_path)
    model = the_model()
    runs = model.run_count
    assert first.inferred == 3 and runs >= 1
    assert "looking at viewer" in read_caption(square_dataset / "red.png")
    second = run(
        square_dataset,
        tiny_tagger.folder,
        tmp_path,
        on_existing="overwrite",
        options=TaggerOptions(general_threshold=0.55),
    )
    assert model.run_count == runs  # no session.run at all
    assert (second.cached, second.inferred, second.written) == (3, 0, 3)
    assert "looking at viewer" not in read_caption(square_dataset / "red.png")
    # A new process-level model (after Unload) still finds the probabilities on disk.
    unload_models()
    third = run(
        square_dataset,
        tiny_tagger.folder,
        tmp_path,
        on_existing="overwrite",
        options=TaggerOptions(general_threshold=0.45),
    )
    assert the_model().run_count == 0
    assert third.cached == 3
    assert "looking at viewer" in read_caption(square_dataset / "red.png")


def test_a_changed_image_is_inferred_again(square_dataset, tiny_tagger, tmp_path, make_image):
    run(square_dataset, tiny_tagger.folder, tmp_path)
    make_image("red.png", size=(32, 32), color=(20, 20, 220), folder=square_dataset)
    summary = run(square_dataset, tiny_tagger.folder, tmp_path, on_existing="overwrite")
    assert (summary.inferred, summary.cached) == (1, 2)
    assert "hatsune miku" in read_caption(square_dataset / "red.png")


def test_dry_run_shows_tags_and_writes_nothing(square_dataset, tiny_tagger, tmp_path):
    (square_dataset / "blue.txt").write_text("hand written")
    summary = run(square_dataset, tiny_tagger.folder, tmp_path, dry_run=2)
    assert [r.path.name for r in summary.results] == ["blue.png", "green.png"]
    blue = summary.results[0]
    assert "hatsune miku" in blue.tags and blue.previous == "hand written" and blue.caption is None
    assert summary.results[1].caption == ", ".join(summary.results[1].tags)
    assert sorted(p.name for p in square_dataset.glob("*.txt")) == ["blue.txt"]
    assert (square_dataset / "blue.txt").read_text() == "hand written"
    assert not (square_dataset / ".embed-studio").exists()


def test_skip_keeps_hand_edited_captions_without_decoding(square_dataset, tiny_tagger, tmp_path):
    (square_dataset / "red.txt").write_text("my character, red dress")
    summary = run(square_dataset, tiny_tagger.folder, tmp_path)
    assert read_caption(square_dataset / "red.png") == "my character, red dress"
    assert (summary.written, summary.skipped, summary.inferred) == (2, 1, 2)


@pytest.mark.parametrize("action", ["overwrite", "append", "prepend", "merge"])
def test_changing_existing_captions_keeps_a_backup(square_dataset, tiny_tagger, tmp_path, action):
    (square_dataset / "red.txt").write_text("my character, red theme")
    run(square_dataset, tiny_tagger.folder, tmp_path, on_existing=action)
    caption = read_caption(square_dataset / "red.png")
    tags = caption.split(", ")
    assert ("my character" in tags) == (action != "overwrite")
    assert tags.count("red theme") == 1  # no action writes a tag twice, append included
    if action == "merge":
        assert tags[0] == "my character"
    if action == "prepend":
        # The old caption's tags follow the new ones, none of them twice.
        assert tags[-1] == "my character" and tags.count("red theme") == 1
    backups = list((square_dataset / ".embed-studio" / "backups").glob("*/red.txt"))
    assert [b.read_text() for b in backups] == ["my character, red theme"]


def test_options_reach_the_captions(square_dataset, tiny_tagger, tmp_path):
    options = TaggerOptions(
        include_ratings=True,
        exclude_tags=["looking at viewer"],
        additional_tags=["my_oc"],
        sort="alphabetical",
        replace_underscores=False,
        escape_brackets=True,
    )
    run(square_dataset, tiny_tagger.folder, tmp_path, options=options)
    tags = read_caption(square_dataset / "red.png").split(", ")
    assert tags[:2] == ["my_oc", "sensitive"]
    assert "looking_at_viewer" not in tags and "kiana_\\(honkai\\)" in tags
    rest = tags[2:]
    assert rest == sorted(rest, key=str.lower)


def test_recursive(square_dataset, tiny_tagger, tmp_path, make_image):
    make_image("deep.png", size=(32, 32), color=RED, folder=square_dataset / "sub")
    run(square_dataset, tiny_tagger.folder, tmp_path)
    assert read_caption(square_dataset / "sub" / "deep.png") is None
    run(square_dataset, tiny_tagger.folder, tmp_path, recursive=True)
    assert "red theme" in read_caption(square_dataset / "sub" / "deep.png")


def test_e621_model_with_its_own_csv(square_dataset, tmp_path):
    z3d = build_tagger(
        tmp_path / "Z3D-E621-Convnext", tags=Z3D_TAGS, csv_name="tags-selected.csv", header=("name", "category")
    )
    run(square_dataset, z3d.folder, tmp_path, options=TaggerOptions(include_ratings=True, character_threshold=0.5))
    assert read_caption(square_dataset / "red.png").split(", ") == ["canine", "anthro", "solo"]
    assert read_caption(square_dataset / "blue.png").split(", ") == ["feline", "krystal", "anthro", "solo"]


def test_folder_errors(tmp_path, tiny_tagger):
    with pytest.raises(DatasetError, match="does not exist"):
        run(tmp_path / "nope", tiny_tagger.folder, tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="No images"):
        run(tmp_path / "empty", tiny_tagger.folder, tmp_path)


def test_all_captioned_folder_loads_no_model(square_dataset, tiny_tagger, tmp_path):
    for p in square_dataset.glob("*.png"):
        p.with_suffix(".txt").write_text("done")
    summary = run(square_dataset, tiny_tagger.folder, tmp_path)
    assert summary.skipped == 3 and loaded_models() == []
    assert summary.describe() == "0 caption(s) written, 3 skipped, 0 failed. Nothing needed the model."


def test_job_reports_progress_and_can_be_cancelled(square_dataset, tiny_tagger, tmp_path):
    request = TagRequest(folder=square_dataset, model=str(tiny_tagger.folder), models_dir=tmp_path / "cache")
    job = make_tag_job(request)
    job.run()
    status = job.status()
    assert status.state == DONE and (status.done, status.total) == (3, 3)
    assert status.stats["written"] == 3 and status.stats["provider"] == "CPUExecutionProvider"
    assert job.result.written == 3

    for p in square_dataset.glob("*.txt"):
        p.unlink()
    job = make_tag_job(request)
    job.cancel()
    job.run()
    assert job.status().state == CANCELLED
    assert list(Path(square_dataset).glob("*.txt")) == []


def test_tag_one_image_from_a_path_or_a_pillow_image(tiny_tagger, tmp_path, make_image):
    from embed_studio.tagger.pipeline import tag_image

    path = make_image("one.png", size=(32, 32), color=BLUE, folder=tmp_path / "single")
    from_path = tag_image(path, str(tiny_tagger.folder), TaggerOptions(include_ratings=True))
    from_pil = tag_image(Image.open(path), str(tiny_tagger.folder), TaggerOptions(include_ratings=True))
    assert from_path.tags == from_pil.tags
    assert "hatsune miku" in from_path.tags and "red theme" not in from_path.tags
    assert set(from_path.ratings) == {"general", "sensitive", "questionable", "explicit"}
    assert list(path.parent.glob("*.txt")) == []


def test_cancel_stops_between_images(square_dataset, tiny_tagger, tmp_path):
    request = TagRequest(folder=square_dataset, model=str(tiny_tagger.folder), models_dir=tmp_path / "c", batch_size=1)
    job = make_tag_job(request)
    job.add_listener(lambda status: job.cancel() if status.stats.get("written") == 1 else None)
    job.run()
    assert job.status().state == CANCELLED
    assert len(list(square_dataset.glob("*.txt"))) == 1
