"""The one WebUIProvider of the process: the WebUI's loaded model, lent to one training run at a time."""

from __future__ import annotations

import threading
from typing import Any

_provider_lock = threading.Lock()
_provider: Any = None


def get_provider() -> Any:
    """The process-wide WebUIProvider (one WebUI model, one training run at a time)."""
    global _provider
    with _provider_lock:
        if _provider is None:
            from embed_studio.backends.webui import WebUIProvider

            _provider = WebUIProvider()
        return _provider
