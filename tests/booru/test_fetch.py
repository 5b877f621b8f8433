"""The fetch job against the fake e621: paging, skips, filters, md5 checks, resume, captions."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from embed_studio.booru.captions import OutputOptions
from embed_studio.booru.fetch import ConnectionOptions, FetchOptions, fetch_job
from embed_studio.booru.tagfilter import TagOptions
from embed_studio.jobs import CANCELLED, DONE, FAILED


def options(server, folder: Path, no_sleep, **kw) -> FetchOptions:
    conn = ConnectionOptions(site=server.flavor, base_url=server.url, min_interval=0, sleep=no_sleep, username="tester")
    kw.setdefault("query", "zangoose")
    return FetchOptions(folder=folder, connection=conn, **kw)


def run(opts: FetchOptions):
    job = fetch_job(opts)
    job.run()
    return job


def final_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file())


def test_pages_with_the_id_cursor_until_the_limit(booru_server, fb, tmp_path, no_sleep):
    server = booru_server(fb.make_posts(700))  # 320 + 320 + 60
    job = run(options(server, tmp_path / "out", no_sleep, limit=650, workers=4))
    assert job.status().state == DONE, job.status().error
    summary = job.result
    assert summary.downloaded == 650 and summary.pages == 3
    pages = [r.query.get("page") for r in server.api_requests()]
    assert pages == [None, "b681", "b361"]
    assert all(r.query["limit"] == "320" for r in server.api_requests())
    images = [p for p in final_files(tmp_path / "out") if p.suffix == ".png"]
    assert len(images) == 650
    for p in images[:20]:
        assert hashlib.md5(p.read_bytes()).hexdigest() == p.stem
    assert job.status().stats["files"] == 650 and job.status().stats["bytes"] == summary.bytes > 0


def test_deleted_hidden_and_filtered_posts_are_skipped_and_counted(booru_server, fb, tmp_path, no_sleep):
    posts = fb.make_posts(8)
    posts[0].deleted = True
    posts[1].hidden = True
    posts[2].ext = "webm"
    posts[3].data = fb.image_bytes(3, size=(600, 600))  # too big for the size limit below
    server = booru_server(posts)
    job = run(options(server, tmp_path, no_sleep, limit=10, max_mb=len(posts[4].data) * 2 / 1024 / 1024))
    s = job.result
    assert (s.deleted, s.hidden, s.filtered, s.downloaded) == (1, 1, 2, 4)
    assert "1 deleted" in s.text() and "1 hidden" in s.text() and "another file type or too large" in s.text()
    assert {p.stem for p in final_files(tmp_path) if p.suffix == ".png"} == {p.md5 for p in posts[4:]}


def test_cut_off_and_md5_mismatch_fail_alone_and_leave_nothing(booru_server, fb, tmp_path, no_sleep):
    posts = fb.make_posts(4)
    server = booru_server(posts)
    server.cut_off.add(posts[0].md5)
    server.corrupt.add(posts[1].md5)
    job = run(options(server, tmp_path, no_sleep, limit=4))
    s = job.result
    assert job.status().state == DONE
    assert s.downloaded == 2 and len(s.failed) == 2
    text = "\n".join(s.failed)
    assert "connection dropped" in text or "cut off" in text
    assert "do not match the post's md5" in text
    names = {p.name for p in tmp_path.iterdir()}
    assert not any(posts[0].md5 in n or posts[1].md5 in n for n in names), names  # no final name, no temp
    assert len(no_sleep.calls) == 4  # each bad file was retried twice


def test_rerun_resumes_and_keeps_edited_captions(booru_server, fb, tmp_path, no_sleep):
    posts = fb.make_posts(5)
    server = booru_server(posts)
    first = run(options(server, tmp_path, no_sleep, limit=3)).result
    assert first.downloaded == 3 and first.captions == 3
    edited = tmp_path / f"{posts[0].md5}.txt"
    edited.write_text("my own caption")
    downloads_before = len([r for r in server.requests if r.path.startswith("/data/")])
    second = run(options(server, tmp_path, no_sleep, limit=5)).result
    assert (second.present, second.downloaded) == (3, 2)
    assert second.captions == 2 and second.captions_kept == 3
    assert edited.read_text() == "my own caption"
    downloads = [r for r in server.requests if r.path.startswith("/data/")][downloads_before:]
    assert len(downloads) == 2


def test_caption_written_at_download_time_from_post_tags(booru_server, fb, tmp_path, no_sleep):
    posts = fb.make_posts(1)
    server = booru_server(posts)
    tags = TagOptions(categories=("general", "species", "character"), include=("zack",), exclude=("hi_res", "smile"))
    run(options(server, tmp_path, no_sleep, limit=1, tag_options=tags))
    caption = (tmp_path / f"{posts[0].md5}.txt").read_text()
    assert caption == "safe content, by some artist, zack, solo, blue eyes, zangoose, zack (character)"


def test_kohya_output_folder(booru_server, fb, tmp_path, no_sleep):
    posts = fb.make_posts(2)
    server = booru_server(posts)
    out = OutputOptions(mode="kohya", kohya_repeats=5, kohya_name="zangoose", folder=tmp_path / "lora")
    run(options(server, tmp_path / "dl", no_sleep, limit=2, output=out))
    kohya = tmp_path / "lora" / "5_zangoose"
    assert sorted(p.suffix for p in kohya.iterdir()) == [".png", ".png", ".txt", ".txt"]
    assert "zangoose" in (kohya / f"{posts[1].md5}.txt").read_text()


def test_sample_size_downloads_the_sample(booru_server, fb, tmp_path, no_sleep):
    posts = fb.make_posts(1)
    posts[0].sample = fb.image_bytes(7, fmt="JPEG")
    server = booru_server(posts)
    s = run(options(server, tmp_path, no_sleep, limit=1, sample=True)).result
    assert s.downloaded == 1
    assert (tmp_path / f"sample-{posts[0].md5}.jpg").read_bytes() == posts[0].sample


def test_cancel_stops_and_reports(booru_server, fb, tmp_path, no_sleep):
    server = booru_server(fb.make_posts(30))
    opts = options(server, tmp_path, no_sleep, limit=30, workers=1)
    job = fetch_job(opts)
    seen = []

    def listener(status):
        seen.append(status.done)
        if status.done >= 2:
            job.cancel()

    job.add_listener(listener)
    job.run()
    status = job.status()
    assert status.state == CANCELLED
    assert "Cancelled" in status.stats["summary"]
    assert len([p for p in tmp_path.iterdir() if p.suffix == ".png"]) < 30
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_malformed_json_fails_the_job_with_a_message(booru_server, fb, tmp_path, no_sleep):
    server = booru_server(fb.make_posts(2))
    server.malformed_json = True
    job = run(options(server, tmp_path, no_sleep, limit=2))
    assert job.status().state == FAILED
    assert "not JSON" in job.status().error


def test_user_agent_names_the_user_on_every_request(booru_server, fb, tmp_path, no_sleep):
    server = booru_server(fb.make_posts(2))
    run(options(server, tmp_path, no_sleep, limit=2))
    assert {r.user_agent for r in server.requests} == {
        f"EmbedStudio/{__import__('embed_studio').__version__} (by tester on e621)"
    }


def test_bad_options_are_refused_before_any_request(booru_server, fb, tmp_path, no_sleep):
    from embed_studio.errors import UserInputError

    server = booru_server(fb.make_posts(1))
    with pytest.raises(UserInputError, match="search query"):
        fetch_job(options(server, tmp_path, no_sleep, query="  "))
    with pytest.raises(UserInputError, match="at least 1"):
        fetch_job(options(server, tmp_path, no_sleep, limit=0))
    assert server.requests == []


def test_order_metatag_pages_by_number(booru_server, fb, tmp_path, no_sleep):
    posts = fb.make_posts(400)
    for i, p in enumerate(posts):
        p.score = i  # the oldest post scores highest
    server = booru_server(posts)
    s = run(options(server, tmp_path, no_sleep, query="zangoose order:score", limit=330)).result
    assert s.downloaded == 330
    assert [r.query.get("page") for r in server.api_requests()] == [None, "2"]
    assert not (tmp_path / f"{posts[0].md5}.png").exists()  # the lowest score is not among the top 330


def test_stale_temporaries_of_a_killed_run_are_removed(booru_server, fb, tmp_path, no_sleep):
    posts = fb.make_posts(1)
    server = booru_server(posts)
    stale = tmp_path / f".{posts[0].md5}.png.abc123.tmp"
    stale.write_bytes(b"half")
    other = tmp_path / ".notes.tmp"
    other.write_text("not ours")
    run(options(server, tmp_path, no_sleep, limit=1))
    assert not stale.exists() and other.exists()
    assert (tmp_path / f"{posts[0].md5}.png").read_bytes() == posts[0].data


def test_stale_sample_temporaries_are_removed_too(booru_server, fb, tmp_path, no_sleep):
    posts = fb.make_posts(1)
    server = booru_server(posts)
    stale = tmp_path / f".sample-{posts[0].md5}.jpg.x1y2z3.tmp"
    stale.write_bytes(b"half a sample")
    run(options(server, tmp_path, no_sleep, limit=1))
    assert not stale.exists()
