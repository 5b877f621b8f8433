"""What a tab needs from whoever hosts it (the WebUI or the standalone app)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embed_studio.backends.provider import BackendProvider
from embed_studio.jobs import Job, JobRegistry, registry


@dataclass
class UiHost:
    """Host services handed to every tab; tabs never import the WebUI themselves."""

    name: str  # "webui" or "standalone"
    models_dir: Path  # where downloaded tagger models are cached
    output_dir: Path  # default place for fetched datasets, trained files, previews
    jobs: JobRegistry = field(default_factory=lambda: registry)
    # Called with every job a tab starts; the WebUI glue mirrors it into shared.state.
    on_job_started: Callable[[Job], None] | None = None
    # Where training gets its model (standalone: loads a path; WebUI: its loaded model). None: no Train tab.
    backend_provider: BackendProvider | None = None
    # A JSON file for settings the user sets once (the standalone app's models folder); None: not remembered.
    prefs_path: Path | None = None
    # Host-specific extras (the WebUI backend factory, the loaded model's name...).
    extras: dict[str, Any] = field(default_factory=dict)
    # The user's saved settings by short name ("booru_user_agent_name"); the WebUI reads its Settings page.
    settings: Callable[[str], Any] = field(default=lambda _name: None)

    def setting(self, name: str, default: Any = None) -> Any:
        """A saved setting, or `default` where the host has none or it is empty."""
        value = self.settings(name)
        return default if value in (None, "") else value

    def submit(self, job: Job) -> Job:
        if self.on_job_started:
            self.on_job_started(job)
        return self.jobs.submit(job)
