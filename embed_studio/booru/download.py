"""Download one post's file as md5.ext: streamed, size-capped, md5-checked, atomic, skipped when present."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import requests

from embed_studio.booru.client import BooruClient
from embed_studio.booru.post import Post
from embed_studio.errors import Cancelled, EmbedStudioError
from embed_studio.fileio import atomic_writer

CHUNK = 64 * 1024
DOWNLOADED, PRESENT, FAILED = "downloaded", "present", "failed"
# An API's announced size may lag a re-upload a little; a body this much over it is not the file.
SIZE_MARGIN = 64 * 1024
# Nothing either site serves is larger (e621: 100 MB): the cap for a body nobody announced.
HARD_MAX_BYTES = 512 * 1024 * 1024


class DownloadError(EmbedStudioError):
    """One file could not be downloaded intact; the fetch records it and goes on."""


class TooLargeError(DownloadError):
    """The body outgrew its cap: the same URL would do it again, so it is not retried."""


@dataclass
class DownloadResult:
    post: Post
    path: Path
    status: str  # DOWNLOADED, PRESENT or FAILED
    bytes: int = 0
    error: str = ""


def target_path(folder: Path, post: Post, sample: bool) -> Path:
    """Where `post` goes: its checked name, and never outside `folder` (a link named like it included)."""
    if post.problem:
        raise DownloadError(post.problem)
    path = folder / post.filename(sample=sample)
    if path.resolve().parent != folder.resolve():
        raise DownloadError(f"{path.name} leads outside {folder} (a link?); not written")
    return path


def size_cap(post: Post, sample: bool, max_bytes: int = 0) -> int:
    """The most bytes read for this file: --max-mb, the announced size (originals) plus a margin."""
    caps = [HARD_MAX_BYTES]
    if max_bytes:
        caps.append(max_bytes)
    if not sample and post.size:
        caps.append(post.size + SIZE_MARGIN)
    return min(caps)


def download_post(
    client: BooruClient,
    post: Post,
    folder: Path,
    *,
    sample: bool = False,
    max_bytes: int = 0,
    retries: int = 2,
    cancelled: Callable[[], bool] = lambda: False,
    on_bytes: Callable[[int], None] | None = None,
) -> DownloadResult:
    """Fetch `post` into folder/md5.ext (sample-md5.ext for a sample) unless it is there (resume).

    The bytes go to a temporary file beside the target and get the final name only once they
    are complete, within their size cap and (for originals) match the post's md5; a failure
    leaves nothing behind and is returned, named, not raised.
    """
    use_sample = bool(sample and post.sample_url)
    try:
        path = target_path(folder, post, use_sample)
    except DownloadError as e:
        return DownloadResult(post, folder, FAILED, error=str(e))
    if path.is_file() and path.stat().st_size > 0:
        return DownloadResult(post, path, PRESENT)
    url = post.sample_url if use_sample else post.file_url
    if not url:
        return DownloadResult(post, path, FAILED, error=f"post {post.id} has no file URL")
    url = urljoin(client.base_url + "/", url)  # self-hosted boorus may give paths, not full URLs
    # A sample is a re-encoded copy: only the original's bytes can match the post's md5.
    expected_md5 = None if use_sample else post.md5
    cap = size_cap(post, use_sample, max_bytes)
    last_error = ""
    for attempt in range(retries + 1):
        try:
            written = _download_once(client, url, path, expected_md5, cap, cancelled, on_bytes)
            return DownloadResult(post, path, DOWNLOADED, bytes=written)
        except TooLargeError as e:
            return DownloadResult(post, path, FAILED, error=str(e))
        except DownloadError as e:
            last_error = str(e)
        except Cancelled:
            raise
        except EmbedStudioError as e:  # NetworkError, WriteError (full disk, a folder in the way)
            return DownloadResult(post, path, FAILED, error=str(e))
        except OSError as e:
            return DownloadResult(post, path, FAILED, error=f"{path.name}: {e.strerror or e}")
        if attempt < retries:
            client.config.sleep(client.config.backoff * (2**attempt))
    return DownloadResult(post, path, FAILED, error=last_error)


def _download_once(
    client: BooruClient,
    url: str,
    path: Path,
    expected_md5: str | None,
    cap: int,
    cancelled: Callable[[], bool],
    on_bytes: Callable[[int], None] | None,
) -> int:
    response = client.stream(url)
    written = 0
    try:
        expected_size = _int_header(response, "Content-Length")
        if expected_size is not None and expected_size > cap:
            raise TooLargeError(
                f"{path.name}: the server announced {expected_size} bytes, over the {cap} allowed "
                "(--max-mb or the size the API gave); not downloaded"
            )
        digest = hashlib.md5()
        with atomic_writer(path) as out:
            try:
                for chunk in response.iter_content(CHUNK):
                    if cancelled():
                        raise Cancelled("Cancelled by the user.")
                    if written + len(chunk) > cap:
                        raise TooLargeError(
                            f"{path.name}: the server sent more than {cap} bytes (--max-mb or the size the API "
                            "gave); cut off and discarded"
                        )
                    out.write(chunk)
                    digest.update(chunk)
                    written += len(chunk)
                    if on_bytes:
                        on_bytes(len(chunk))
            except (requests.RequestException, ConnectionError) as e:
                # requests' errors subclass OSError, so a full disk (a plain OSError) is not caught here.
                raise DownloadError(
                    f"{path.name}: the connection dropped after {written} of {expected_size or '?'} bytes"
                ) from e
            if expected_size is not None and written != expected_size:
                raise DownloadError(f"{path.name}: got {written} of {expected_size} bytes (connection cut off)")
            if written == 0:
                raise DownloadError(f"{path.name}: the server sent an empty file")
            if expected_md5 and digest.hexdigest() != expected_md5.lower():
                raise DownloadError(
                    f"{path.name}: the downloaded bytes do not match the post's md5 (got {digest.hexdigest()}); "
                    "the file was discarded"
                )
    finally:
        response.close()
    return written


def _int_header(response: requests.Response, name: str) -> int | None:
    try:
        return int(response.headers[name])
    except (KeyError, ValueError):
        return None
