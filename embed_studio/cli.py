"""`embed-studio` headless commands; each command group lives in embed_studio/commands/."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from embed_studio import __version__
from embed_studio.errors import EmbedStudioError

VERBOSE_HELP = "also show the model libraries' log messages and warnings (hidden by default)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="embed-studio",
        description="Fetch, tag, prune and train textual-inversion embeddings and hypernetworks.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import embed_studio.commands as commands

    # Each module registers its own subcommands, so command groups are added without editing this file.
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"embed_studio.commands.{info.name}")
        if hasattr(module, "register"):  # helpers shared by the commands register nothing
            module.register(sub)
    for command in set(sub.choices.values()):
        # Also after the command, where a user types it; SUPPRESS keeps an absent one from undoing the first.
        command.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            return _run(argv)
        finally:  # also on SystemExit from --help: a closed pipe must show up here, not at interpreter exit
            sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`embed-studio tags DIR list | head`): stop quietly, as the shell's tools do.
        # stdout is pointed at /dev/null so Python's own flush at exit has nothing left to fail on.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool ended by a closed pipe


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from embed_studio.commands.progress_display import configure_library_output

    configure_library_output(args.verbose)
    try:
        return int(args.func(args) or 0)
    except EmbedStudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        raise  # not the user's path: main() ends quietly
    except OSError as e:
        # A path the user gave that is a file, read-only, missing or on a full disk: their error, not a bug.
        from embed_studio.fileio import os_error_message

        print(f"error: {os_error_message(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
