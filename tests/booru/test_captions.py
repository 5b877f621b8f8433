"""Captioning an existing folder by md5: batched lookups, copies and preprocessed names, outputs."""

from __future__ import annotations

from embed_studio.booru.captions import OutputOptions, caption_folder, tags_file_stem
from embed_studio.booru.fetch import CaptionOptions, ConnectionOptions, caption_job
from embed_studio.booru.sites import open_booru
from embed_studio.booru.tagfilter import TagOptions
from embed_studio.jobs import DONE


def test_folder_is_captioned_in_batches_of_100(booru_server, fb, tmp_path, no_sleep):
    posts = fb.make_posts(330)
    server = booru_server(posts)
    for p in posts:
        (tmp_path / f"{p.md5}.png").write_bytes(p.data)
    booru = open_booru("e621", base_url=server.url, min_interval=0, sleep=no_sleep)
    summary = caption_folder(tmp_path, booru, TagOptions(), OutputOptions())
    assert summary.matched == summary.written == 330
    assert [r.query["tags"].split()[1] for r in server.api_requests()] == ["status:any"] * 4
    assert [len(r.query["tags"].split()[0][4:].split(",")) for r in server.api_requests()] == [100, 100, 100, 30]
    assert summary.requests == 4
    assert (tmp_path / f"{posts[4].md5}.txt").read_text().startswith("explicit content, by some artist")


def test_copies_preprocessed_names_hidden_posts_and_strangers(booru_server, fb, tmp_path, no_sleep):
    posts = fb.make_posts(3)
    posts[1].deleted = True  # no file URL any more, but its tags still caption the user's file
    posts[2].hidden = True
    server = booru_server(posts)
    names = [
        f"{posts[0].md5}.png", f"{posts[0].md5} (1).png", f"00001-0 {posts[1].md5}.png",
        f"00002-1-{posts[2].md5}.jpg", f"{'f' * 32}.png", "holiday.png",
    ]  # fmt: skip
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    (tmp_path / f"{posts[0].md5}.txt").write_text("kept")
    job = caption_job(CaptionOptions(tmp_path, ConnectionOptions(base_url=server.url, min_interval=0, sleep=no_sleep)))
    job.run()
    assert job.status().state == DONE, job.status().error
    s = job.result
    assert (s.files, s.matched, s.written, s.kept) == (6, 4, 3, 1)
    assert s.not_found == [f"{'f' * 32}.png"] and s.not_md5 == ["holiday.png"]
    assert (tmp_path / f"{posts[0].md5}.txt").read_text() == "kept"
    assert "zangoose" in (tmp_path / f"00001-0 {posts[1].md5}.txt").read_text()
    assert "zangoose" in (tmp_path / f"00002-1-{posts[2].md5}.txt").read_text()
    assert len(server.api_requests()) == 1
    assert "not on e621" in job.status().stats["summary"]


def test_tags_in_the_file_name(booru_server, fb, tmp_path, no_sleep):
    posts = fb.make_posts(1)
    posts[0].tags["general"] = ["what?", "a/b", "c:d"]
    server = booru_server(posts)
    (tmp_path / f"{posts[0].md5}.png").write_bytes(b"img")
    booru = open_booru("e621", base_url=server.url, min_interval=0, sleep=no_sleep)
    opts = TagOptions(prepend_rating=False, escape_brackets=False, categories=("general", "character"))
    caption_folder(tmp_path, booru, opts, OutputOptions(mode="filename"))
    copies = list((tmp_path / "tagged").iterdir())
    assert [c.name for c in copies] == ["by some artist, what, ab, cd, zack (character).png"]
    assert copies[0].read_bytes() == b"img"
    long = ", ".join(f"tag number {i}" for i in range(100))
    stem = tags_file_stem(long)
    assert len(stem.encode()) <= 200 and stem.endswith(tuple("0123456789"))


def _tagger_models():
    """tests/tagger's tiny ONNX model builder (that folder is not on this one's import path)."""
    import importlib.util
    import sys
    from pathlib import Path

    name = "es_tests_tagger_models"
    if name not in sys.modules:
        path = Path(__file__).parents[1] / "tagger" / "tagger_test_models.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _tag(folder, model_folder, tmp_path, **kwargs):
    from embed_studio.tagger.pipeline import TagRequest, tag_folder

    return tag_folder(TagRequest(folder=folder, model=str(model_folder), models_dir=tmp_path / "cache", **kwargs))


def test_the_same_four_tags_are_spelled_alike_by_booru_tagger_and_dataset(booru_server, fb, tmp_path, no_sleep):
    from embed_studio.dataset.captions import DatasetCaptions

    expected = "o_o, x_x, black hair, kiana kaslana (honkai)"
    posts = fb.make_posts(1)
    posts[0].tags = {"general": ["o_o", "x_x", "black_hair"], "character": ["kiana_kaslana_(honkai)"]}
    booru_dir = tmp_path / "booru"
    booru_dir.mkdir()
    (booru_dir / f"{posts[0].md5}.png").write_bytes(posts[0].data)
    booru = open_booru("e621", base_url=booru_server(posts).url, min_interval=0, sleep=no_sleep)
    opts = TagOptions(prepend_rating=False, prepend_artist=False, categories=("general", "character"))
    caption_folder(booru_dir, booru, opts, OutputOptions())

    # A WD-shaped model whose four tags score 0.98..0.97 on any image, in this order.
    models = _tagger_models()
    four = [("general", 9, (0, 0, 0), -5.0), ("o_o", 0, (0, 0, 0), 4.0), ("x_x", 0, (0, 0, 0), 3.9),
            ("black_hair", 0, (0, 0, 0), 3.8), ("kiana_kaslana_(honkai)", 4, (0, 0, 0), 3.7)]  # fmt: skip
    model = models.build_tagger(tmp_path / "models" / "four", tags=four)
    tagger_dir = tmp_path / "tagger"
    tagger_dir.mkdir()
    (tagger_dir / "x.png").write_bytes(posts[0].data)
    _tag(tagger_dir, model.folder, tmp_path)

    # What the booru fetch used to write, in a folder the Dataset panel normalizes.
    dataset_dir = tmp_path / "dataset"
    dataset_dir.mkdir()
    (dataset_dir / "x.png").write_bytes(posts[0].data)
    (dataset_dir / "x.txt").write_text(r"o o, x x, black hair, kiana kaslana \(honkai\)", encoding="utf-8")
    ds = DatasetCaptions.load(dataset_dir)
    ds.normalize()
    ds.save()

    written = [
        (booru_dir / f"{posts[0].md5}.txt").read_text(encoding="utf-8"),
        (tagger_dir / "x.txt").read_text(encoding="utf-8"),
        (dataset_dir / "x.txt").read_text(encoding="utf-8"),
    ]
    assert written == [expected] * 3


def test_fetch_then_tag_with_merge_gives_one_clean_caption(booru_server, fb, tmp_path, no_sleep):
    from embed_studio.tagger.options import TaggerOptions
    from embed_studio.tagger.pipeline import UNCHANGED
    from embed_studio.tagger.registry import MODELS

    posts = fb.make_posts(1)
    posts[0].rating = "e"
    posts[0].tags = {"general": ["solo", "anthro"], "species": ["canine"], "character": ["krystal"],
                     "artist": ["some_artist"], "meta": ["hi_res"]}  # fmt: skip
    (tmp_path / f"{posts[0].md5}.png").write_bytes(posts[0].data)
    booru = open_booru("e621", base_url=booru_server(posts).url, min_interval=0, sleep=no_sleep)
    caption_folder(tmp_path, booru, TagOptions(categories=("general", "species", "character")), OutputOptions())
    caption = tmp_path / f"{posts[0].md5}.txt"
    assert caption.read_text() == "explicit content, by some artist, solo, anthro, canine, krystal"

    # A Z3D-shaped model (e621 numbering, no rating rows) that sees the same tags and one more.
    z3d_tags = [("anthro", 0, (0, 0, 0), 2.2), ("canine", 5, (0, 0, 0), 2.2), ("solo", 0, (0, 0, 0), 1.4),
                ("blue_hair", 0, (0, 0, 0), 0.85), ("krystal", 4, (0, 0, 0), 0.4), ("hi_res", 7, (0, 0, 0), 3.0)]  # fmt: skip
    z3d = _tagger_models().build_tagger(
        tmp_path / "models" / "z3d", tags=z3d_tags, csv_name="tags-selected.csv", header=("name", "category")
    )
    spec = MODELS["Z3D-E621-Convnext"]
    options = TaggerOptions(general_threshold=spec.general_threshold, character_threshold=spec.character_threshold)
    summary = _tag(tmp_path, z3d.folder, tmp_path, options=options, on_existing="merge")
    assert summary.written == 1
    # No tag twice; characters, then species, then general (the booru's rating and artist stay in front).
    assert caption.read_text() == "explicit content, by some artist, krystal, canine, solo, anthro, blue hair"
    again = _tag(tmp_path, z3d.folder, tmp_path, options=options, on_existing="merge")
    assert [r.status for r in again.results] == [UNCHANGED]  # stable: merging twice changes nothing
