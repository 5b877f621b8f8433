"""`embed-studio ui`: the same tabs as in the WebUI, served standalone on 127.0.0.1."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def default_home() -> Path:
    return Path(os.environ.get("EMBED_STUDIO_HOME", Path.home() / ".cache" / "embed-studio"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="open the Embed Studio tabs in a browser (standalone, no WebUI)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=7870, help="port to serve the page on (default: %(default)s)")
    p.add_argument(
        "--models-dir", type=Path, default=None, help="tagger model cache (default: ~/.cache/embed-studio/models)"
    )
    p.add_argument("--output-dir", type=Path, default=None, help="default output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from embed_studio.backends.provider import StandaloneProvider
    from embed_studio.ui.app import build_studio, serve
    from embed_studio.ui.host import UiHost

    home = default_home()
    output_dir = args.output_dir or home / "outputs"
    host = UiHost(
        name="standalone",
        models_dir=args.models_dir or home / "models",
        output_dir=output_dir,
        backend_provider=StandaloneProvider(output_dir),
        prefs_path=home / "ui-settings.json",
    )
    serve(build_studio(host), args.host, args.port)
    return 0
