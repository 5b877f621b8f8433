"""The extension's style.css and javascript/*.js, for the standalone app (the WebUI loads them itself)."""

from __future__ import annotations

import json
from pathlib import Path

EXTENSION_ROOT = Path(__file__).resolve().parents[2]


def stylesheet() -> str:
    css = EXTENSION_ROOT / "style.css"
    return css.read_text(encoding="utf-8") if css.exists() else ""


def scripts() -> list[str]:
    folder = EXTENSION_ROOT / "javascript"
    return [p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.js"))] if folder.is_dir() else []


def loader_js() -> str | None:
    """A gradio `_js` function that runs every extension script once, as the WebUI's page would."""
    sources = scripts()
    if not sources:
        return None
    # Each script runs through a <script> element so its top-level declarations become globals,
    # exactly as when the WebUI includes it.
    return (
        "() => { for (const src of "
        + json.dumps(sources)
        + ") { const s = document.createElement('script'); s.textContent = src; document.head.appendChild(s); } }"
    )
