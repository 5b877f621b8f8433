"""The boorus we know by name: their default server, page size and client class."""

from __future__ import annotations

from collections.abc import Callable

from embed_studio.booru.client import MIN_INTERVAL, BooruClient, ClientConfig
from embed_studio.booru.danbooru import DANBOORU_URL, Danbooru
from embed_studio.booru.e621 import E621, E621_URL
from embed_studio.booru.post import Booru
from embed_studio.errors import UserInputError

SITES: dict[str, tuple[type[Booru], str]] = {
    "e621": (E621, E621_URL),
    "danbooru": (Danbooru, DANBOORU_URL),
}


def site_names() -> list[str]:
    return list(SITES)


def open_booru(
    site: str,
    *,
    base_url: str = "",
    username: str = "",
    api_key: str = "",
    cancelled: Callable[[], bool] | None = None,
    **client_options,
) -> Booru:
    """A ready Booru for `site`; client_options go to ClientConfig (min_interval, sleep, clock...)."""
    key = site.strip().lower()
    if key not in SITES:
        raise UserInputError(f"Unknown booru {site!r}: choose one of {', '.join(SITES)}.")
    cls, default_url = SITES[key]
    url = (base_url or default_url).strip()
    if not url.startswith(("http://", "https://")):
        raise UserInputError(f"Server URL {url!r} must start with http:// or https://.")
    asked = client_options.get("min_interval")
    # Every booru opened for a user goes through here: the floor holds for the CLI, the tab and the API.
    if asked is not None and not float(asked) >= MIN_INTERVAL:  # NaN too
        client_options["min_interval"] = MIN_INTERVAL
    config = ClientConfig(base_url=url, site=key, username=username.strip(), api_key=api_key.strip(), **client_options)
    return cls(BooruClient(config, cancelled=cancelled))
