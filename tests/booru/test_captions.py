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
