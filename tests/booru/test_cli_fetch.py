"""`embed-studio fetch` and `embed-studio caption` headless, against the fake boorus."""

from __future__ import annotations

from embed_studio.cli import main


def test_fetch_e621_headless(booru_server, fb, tmp_path, capsys):
    posts = fb.make_posts(5)
    posts[0].deleted = True
    server = booru_server(posts)
    out = tmp_path / "zangoose"
    code = main(["fetch", "e621", "zangoose -female", "--out", str(out), "--limit", "3", "--base-url", server.url,
                 "--interval", "0", "--user", "cli_user", "--exclude", "smile"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "3 downloaded" in printed and "1 deleted" in printed
    assert sorted(p.suffix for p in out.iterdir()) == [".png"] * 3 + [".txt"] * 3
    assert all("smile" not in p.read_text() for p in out.glob("*.txt"))
    assert server.api_requests()[0].query["tags"] == "zangoose -female"
    assert "cli_user" in server.api_requests()[0].user_agent


def test_fetch_danbooru_headless_and_errors(booru_server, fb, tmp_path, capsys, monkeypatch):
    server = booru_server(fb.make_posts(4), flavor="danbooru")
    monkeypatch.setenv("EMBED_STUDIO_API_KEY", "secret")
    code = main(["fetch", "danbooru", "solo", "--out", str(tmp_path), "--limit", "2", "--base-url", server.url,
                 "--interval", "0", "--user", "me", "--output", "kohya", "--kohya-name", "zack"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert len(list((tmp_path / "10_zack").glob("*.txt"))) == 2
    assert server.api_requests()[0].authorization.startswith("Basic ")
    server.malformed_json = True
    code = main(["fetch", "danbooru", "solo", "--out", str(tmp_path / "x"), "--base-url", server.url,
                 "--interval", "0"])  # fmt: skip
    assert code == 1
    assert "not JSON" in capsys.readouterr().err


def test_caption_existing_folder_headless(booru_server, fb, tmp_path, capsys):
    posts = fb.make_posts(2)
    server = booru_server(posts)
    for p in posts:
        (tmp_path / f"00001-0 {p.md5}.png").write_bytes(p.data)
    code = main(["caption", "e621", str(tmp_path), "--base-url", server.url, "--interval", "0", "--no-rating"])
    assert code == 0
    assert "2 captions written" in capsys.readouterr().out
    assert (tmp_path / f"00001-0 {posts[0].md5}.txt").read_text().startswith("by some artist, ")
