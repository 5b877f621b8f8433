"""The WebUI's optimizer-state sidecar (<file>.optim) and the hash check it does before trusting one."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from embed_studio.errors import FileFormatError

log = logging.getLogger(__name__)

OPTIM_SUFFIX = ".optim"


def optim_path(target: str | os.PathLike) -> Path:
    """The sidecar path for a saved embedding/hypernetwork: the file name plus '.optim'."""
    target = Path(target)
    return target.with_name(target.name + OPTIM_SUFFIX)


def state_tag(name: str) -> str:
    """What the optimizer-state sidecar's hash carries so one optimizer never loads another's state.

    AdamW's is empty: its sidecar stays the WebUI's, which the WebUI's own trainer resumes. Any other optimizer's
    hash gets a suffix, so the WebUI (and a run with another optimizer) starts fresh instead of misreading it.
    """
    return "" if name == "adamw" else f":{name}"


def sidecar_status(target: str | os.PathLike, expected_hash: str) -> str:
    """How the sidecar of `target` stands against the file's hash: 'none', 'matches', 'matches, for <optimizer>'
    (another optimizer's state, which Embed Studio resumes with that optimizer and the WebUI ignores) or 'stale'."""
    try:
        saved = read_optimizer_file(target)
    except FileFormatError as e:
        return f"unreadable ({e})"
    if saved is None:
        return "none"
    found = str(saved.get("hash", ""))
    if found == expected_hash:
        return "matches"
    if found.startswith(expected_hash + ":"):
        name = found[len(expected_hash) + 1 :]
        return f"matches, for {name} (Embed Studio resumes it with {name}; the WebUI's trainer starts afresh)"
    return "stale (hash differs; the WebUI ignores it)"


def save_optimizer_state(
    target: str | os.PathLike, optimizer_state_dict: dict, hash: str, optimizer_name: str | None = None
) -> None:
    """Write target + '.optim' as the WebUI does: {'hash', 'optimizer_state_dict'} (hypernetworks also
    carry 'optimizer_name', written first like the WebUI). Atomic; passes the WebUI's safe unpickler."""
    from embed_studio.formats.torchfile import save_webui_pt

    saved: dict[str, Any] = {}
    if optimizer_name is not None:
        saved["optimizer_name"] = optimizer_name
    saved["hash"] = hash
    saved["optimizer_state_dict"] = optimizer_state_dict
    save_webui_pt(saved, optim_path(target))


def read_optimizer_file(target: str | os.PathLike) -> dict | None:
    """The whole sidecar dict for `target`, or None when there is none. Raises FileFormatError if unreadable."""
    from embed_studio.formats.torchfile import load_pt

    path = optim_path(target)
    if not path.is_file():
        return None
    saved = load_pt(path)
    if not isinstance(saved, dict):
        raise FileFormatError(f"{path}: not an optimizer state file.")
    return saved


def load_optimizer_state(target: str | os.PathLike, expected_hash: str) -> dict | None:
    """The saved optimizer_state_dict if target.optim exists and its 'hash' equals expected_hash, else None.

    That is the WebUI's own check: a sidecar left from other weights is ignored and training resumes with a
    fresh optimizer. A damaged sidecar is treated the same way (logged), since nothing is lost by it.
    """
    try:
        saved = read_optimizer_file(target)
    except FileFormatError as e:
        log.warning("Ignoring optimizer state: %s", e)
        return None
    if saved is None or saved.get("hash") != expected_hash:
        return None
    state = saved.get("optimizer_state_dict")
    return state if isinstance(state, dict) else None


def saved_optimizer_name(target: str | os.PathLike) -> str | None:
    """The optimizer class name a hypernetwork sidecar records ('AdamW' when absent, like the WebUI)."""
    try:
        saved = read_optimizer_file(target)
    except FileFormatError:
        return None
    if saved is None:
        return None
    return str(saved.get("optimizer_name", "AdamW"))
