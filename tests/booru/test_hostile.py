"""Against a hostile booru (hostile_booru.py): nothing a server sends gets out of its box."""

from __future__ import annotations

import hashlib
from pathlib import Path

from embed_studio.booru.fetch import CaptionOptions, ConnectionOptions, FetchOptions, caption_job, fetch_job
from embed_studio.booru.sites import open_booru
from embed_studio.booru.tagfilter import TagOptions
from embed_studio.cli import main
from embed_studio.jobs import DONE

MiB = 1024 * 1024


def conn(server, no_sleep, **kw) -> ConnectionOptions:
    return ConnectionOptions(site=server.flavor, base_url=server.url, min_interval=0, sleep=no_sleep, **kw)


def fetch(server, folder: Path, no_sleep, conn_kw: dict | None = None, **kw):
    kw.setdefault("query", "zangoose")
    kw.setdefault("limit", 50)
    job = fetch_job(FetchOptions(folder=folder, connection=conn(server, no_sleep, **(conn_kw or {})), **kw))
    job.run()
    assert job.status().state == DONE, job.status().error
    return job.result


def all_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_login_goes_only_to_the_api_host(hostile_server, fb, tmp_path, no_sleep):
    posts = fb.make_posts(3)
    api, cdn = hostile_server(posts), hostile_server(posts)  # two ports: two hosts for the client
    api.file_host = cdn.url
    cdn.extra_files["/tags.csv"] = b"solo,0,100,\nzangoose,5,50,\n"
    s = fetch(
        api, tmp_path, no_sleep, conn_kw={"username": "me", "api_key": "s3cret"}, tag_list=f"{cdn.url}/tags.csv",
    )  # fmt: skip
    assert s.downloaded == 3
    assert api.api_requests() and all(r.authorization for r in api.api_requests())
    cdn_paths = {r.path for r in cdn.requests}
    assert "/tags.csv" in cdn_paths and len(cdn_paths) == 4  # the tag list and the three files
    assert [r.authorization for r in cdn.requests] == [None] * len(cdn.requests)


def test_path_shaped_md5_with_samples_is_skipped_and_named(hostile_server, fb, tmp_path, no_sleep):
    posts = fb.make_posts(2)
    for p in posts:
        p.sample = fb.image_bytes(p.id + 500, fmt="JPEG")
    server = hostile_server(posts)
    server.overrides[posts[0].id] = {"file.md5": "../../sneaky"}
    out = tmp_path / "a" / "b" / "out"
    s = fetch(server, out, no_sleep, sample=True)
    assert all_files(tmp_path) == {f"a/b/out/sample-{posts[1].md5}.jpg", f"a/b/out/sample-{posts[1].md5}.txt"}
    assert s.downloaded == 1 and len(s.unsafe) == 1
    assert f"post {posts[0].id}" in s.text() and "'../../sneaky' is not 32 hex digits" in s.text()
    assert not s.text().startswith("Done")


def test_path_shaped_extension_is_skipped_even_when_the_folder_exists(hostile_server, fb, tmp_path, no_sleep):
    posts = fb.make_posts(2)
    server = hostile_server(posts)
    server.overrides[posts[0].id] = {"file.ext": "png/../../../escaped"}
    out = tmp_path / "a" / "b" / "out"
    (out / f"{posts[0].md5}.png").mkdir(parents=True)  # lets the ../ resolve on today's code
    s = fetch(server, out, no_sleep, types=())  # "all": no file type filter stops it first
    assert all_files(tmp_path) == {f"a/b/out/{posts[1].md5}.png", f"a/b/out/{posts[1].md5}.txt"}
    assert s.downloaded == 1 and s.unsafe == [f"post {posts[0].id}: file type 'png/../../../escaped' is not one of "
                                              "avif, bmp, gif, jpeg, jpg, mp4, png, swf, webm, webp, zip"]  # fmt: skip


def test_a_link_named_like_a_post_does_not_lead_outside(hostile_server, fb, tmp_path, no_sleep):
    posts = fb.make_posts(2)
    server = hostile_server(posts)
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"not the post")
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{posts[0].md5}.png").symlink_to(outside)
    s = fetch(server, out, no_sleep)
    assert (s.downloaded, s.present) == (1, 0)
    assert s.failed == [f"post {posts[0].id}: {posts[0].md5}.png leads outside {out} (a link?); not written"]
    assert outside.read_bytes() == b"not the post" and not (out / f"{posts[0].md5}.txt").exists()


def test_a_sample_cannot_pass_for_the_verified_original(hostile_server, fb, tmp_path, no_sleep):
    posts = fb.make_posts(1)
    posts[0].data = fb.image_bytes(1, fmt="JPEG")
    posts[0].ext = "jpg"
    posts[0].sample = fb.image_bytes(2, fmt="JPEG", size=(12, 8))
    server = hostile_server(posts)
    assert fetch(server, tmp_path, no_sleep, sample=True).downloaded == 1
    originals = fetch(server, tmp_path, no_sleep)
    assert (originals.downloaded, originals.present) == (1, 0)  # the sample did not count as the original
    original = tmp_path / f"{posts[0].md5}.jpg"
    assert hashlib.md5(original.read_bytes()).hexdigest() == posts[0].md5
    assert (tmp_path / f"sample-{posts[0].md5}.jpg").read_bytes() == posts[0].sample
    # The sample is still its post's image for captioning by md5.
    (tmp_path / f"sample-{posts[0].md5}.txt").unlink()
    job = caption_job(CaptionOptions(folder=tmp_path, connection=conn(server, no_sleep)))
    job.run()
    assert job.result.matched == 2 and job.result.not_md5 == []


def test_a_body_larger_than_announced_is_cut_off_once(hostile_server, fb, hb, tmp_path, no_sleep):
    posts = fb.make_posts(3)
    server = hostile_server(posts)
    server.oversize[posts[0].md5] = 48 * MiB  # the API announces a few hundred bytes
    s = fetch(server, tmp_path, no_sleep)
    assert s.downloaded == 2 and len(s.failed) == 1
    assert f"{posts[0].md5}.png: the server sent more than" in s.failed[0]
    assert len(hb.file_requests(server, posts[0].md5)) == 1  # not retried
    assert server.sent[posts[0].md5][0] < 16 * MiB  # the client hung up instead of reading on
    assert not [p for p in tmp_path.iterdir() if posts[0].md5 in p.name]


def test_max_mb_cuts_off_a_sample_too(hostile_server, fb, tmp_path, no_sleep):
    posts = fb.make_posts(2)
    for p in posts:
        p.sample = fb.image_bytes(p.id, fmt="JPEG")
    server = hostile_server(posts)
    server.oversize[posts[0].md5] = 8 * MiB
    s = fetch(server, tmp_path, no_sleep, sample=True, max_mb=1)
    assert s.downloaded == 1 and "more than 1048576 bytes" in s.failed[0]
    assert server.sent[posts[0].md5][0] < 8 * MiB
    assert not [p for p in tmp_path.iterdir() if posts[0].md5 in p.name]


def test_a_write_error_fails_that_file_and_the_fetch_goes_on(hostile_server, fb, tmp_path, capsys):
    posts = fb.make_posts(3)
    server = hostile_server(posts)
    (tmp_path / f"{posts[0].md5}.png").mkdir()  # the image cannot take its name
    (tmp_path / f"{posts[1].md5}.txt").mkdir()  # the caption cannot (it is to be replaced)
    code = main(["fetch", "e621", "zangoose", "--out", str(tmp_path), "--base-url", server.url, "--interval", "0",
                 "--overwrite-captions"])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 1
    assert "Done:" not in printed.out and printed.out.startswith("Finished with 2 problems")
    assert f"post {posts[0].id}: Could not write" in printed.out and f"{posts[0].md5}.png" in printed.out
    assert f"post {posts[1].id}: caption of {posts[1].md5}.png" in printed.out
    assert (tmp_path / f"{posts[2].md5}.txt").is_file()
    assert (tmp_path / f"{posts[1].md5}.png").read_bytes() == posts[1].data


def test_interval_has_a_floor_of_half_a_second(hostile_server, fb):
    class Clock:
        now, sleeps = 0.0, []

        def __call__(self):
            return self.now

        def sleep(self, s):
            self.sleeps.append(s)
            self.now += s

    clock = Clock()
    server = hostile_server(fb.make_posts(330))  # two pages
    booru = ConnectionOptions(base_url=server.url, min_interval=0.1, clock=clock, sleep=clock.sleep).open()
    assert sum(len(page) for page in booru.search("zangoose")) == 330
    assert clock.sleeps == [0.5]


def _md5_terms(request) -> tuple[int, bool]:
    terms = request.query["tags"].split()
    md5s = next(t for t in terms if t.startswith("md5:"))[4:].split(",")
    return len(md5s), "status:any" in terms


def test_e621_md5_lookup_sees_deleted_posts_in_batches_of_100(hostile_server, fb, no_sleep):
    posts = fb.make_posts(150)
    posts[120].deleted = True  # deleted since it was downloaded: its tags still caption the file
    server = hostile_server(posts)
    booru = open_booru("e621", base_url=server.url, min_interval=0, sleep=no_sleep)
    found = booru.lookup_md5([p.md5 for p in posts])
    assert set(found) == {p.md5 for p in posts}
    assert [_md5_terms(r) for r in server.api_requests()] == [(100, True), (50, True)]


def test_a_414_splits_the_md5_batch(hostile_server, fb, no_sleep):
    posts = fb.make_posts(100)
    server = hostile_server(posts)
    server.max_uri = 2500  # 100 md5s do not fit, 50 do
    booru = open_booru("e621", base_url=server.url, min_interval=0, sleep=no_sleep)
    assert set(booru.lookup_md5([p.md5 for p in posts])) == {p.md5 for p in posts}
    assert [r.status for r in server.api_requests()] == [414, 200, 200]


def test_danbooru_metatags_do_not_count_toward_the_tag_limit(hostile_server, fb, no_sleep):
    posts = fb.make_posts(6)
    server = hostile_server(posts, flavor="danbooru")
    booru = conn(server, no_sleep).open()
    found = [p for page in booru.search("zangoose solo rating:e score:>5 status:active") for p in page]
    assert {p.id for p in found} == {p.id for p in posts if p.rating == "e"}
    assert [r.query["tags"] for r in server.api_requests()] == ["zangoose solo rating:e score:>5 status:active"]
    assert not booru.notes


def test_danbooru_local_tags_follow_the_site_aliases(hostile_server, fb, no_sleep):
    posts = fb.make_posts(4)
    server = hostile_server(posts, flavor="danbooru")
    server.aliases["grin"] = "smile"  # every post is tagged smile; nobody is tagged grin
    booru = conn(server, no_sleep).open()
    found = [p for page in booru.search("zangoose solo grin") for p in page]
    assert len(found) == 4
    assert [r.query.get("search[antecedent_name_comma]") for r in server.requests if "alias" in r.path] == ["grin"]


def test_danbooru_deleted_and_banned_posts_are_skipped(hostile_server, fb, tmp_path, no_sleep):
    posts = fb.make_posts(4)
    posts[0].deleted = True
    posts[1].banned = True
    server = hostile_server(posts, flavor="danbooru")
    server.deleted_files_served = True  # as Danbooru does: the file URLs are still there
    server.hide_deleted = False  # a user who shows deleted posts in searches
    s = fetch(server, tmp_path, no_sleep, query="solo")
    assert (s.deleted, s.downloaded) == (2, 2)
    assert {p.stem for p in tmp_path.glob("*.png")} == {posts[2].md5, posts[3].md5}


def test_e621_contributor_tags_are_kept(hostile_server, fb, tmp_path, no_sleep):
    posts = fb.make_posts(1)
    posts[0].tags["contributor"] = ["some_commissioner"]
    server = hostile_server(posts)
    tags = TagOptions(categories=("species", "contributor"), prepend_rating=False, prepend_artist=False)
    fetch(server, tmp_path, no_sleep, tag_options=tags)
    assert (tmp_path / f"{posts[0].md5}.txt").read_text() == "zangoose, some commissioner"


def test_a_search_cut_short_is_a_failure_not_done(hostile_server, fb, tmp_path, no_sleep):
    server = hostile_server(fb.make_posts(330))
    server.fail_next = [0, 500]  # the first page comes, the second answers 500
    s = fetch(server, tmp_path, no_sleep, limit=330, write_captions=False)
    assert s.downloaded == 320
    assert s.text().startswith("Finished with 1 problem") and "the search stopped early" in s.failed[0]
