"""Training prompts: template files with [name]/[filewords], captions from sidecars or file names, tag shuffle/dropout."""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

from embed_studio.dataset.folder import read_caption
from embed_studio.errors import UserInputError
from embed_studio.tagspell import escape as escape_brackets  # the one prompt escaper, under its old name here
from embed_studio.tagspell import tag_key

TEMPLATES_DIR = Path(__file__).with_name("templates")
DEFAULT_TEMPLATE = "filewords_name.txt"  # "[filewords], [name]": what the guides recommend for characters

# The WebUI strips a leading "00001-0 " style counter from file names used as captions.
_NUMBERS_AT_START = re.compile(r"^[-\d]+\s*")


def list_templates(extra_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Template name -> file: the shipped ones, then any .txt in `extra_dir` (which wins on a clash)."""
    found = {p.name: p for p in sorted(TEMPLATES_DIR.glob("*.txt"))}
    if extra_dir and Path(extra_dir).is_dir():
        found.update({p.name: p for p in sorted(Path(extra_dir).rglob("*.txt"))})
    return found


def resolve_template(template: str | os.PathLike, extra_dir: str | os.PathLike | None = None) -> Path:
    """A template by file path or by name (with or without .txt) among list_templates()."""
    path = Path(template).expanduser()
    if path.is_file():
        return path
    known = list_templates(extra_dir)
    for name in (str(template), f"{template}.txt"):
        if name in known:
            return known[name]
    raise UserInputError(
        f"Prompt template {template!r} not found. Pick one of: {', '.join(known)} or give a file path."
    )


def known_template(template: str | os.PathLike, extra_dir: str | os.PathLike | None = None) -> Path:
    """A template among list_templates() only, by name or by its own path: what a client (the API) may pick.

    A client naming any other file would have the server read it and show its lines as training prompts.
    """
    known = list_templates(extra_dir)
    try:
        path = resolve_template(template, extra_dir).resolve()
    except (UserInputError, OSError):
        path = None
    if path is None or path not in {p.resolve() for p in known.values()}:
        raise UserInputError(f"Prompt template {str(template)!r} is not one of: {', '.join(known)}. Pick one of them.")
    return path


def load_template_lines(
    template: str | os.PathLike, extra_dir: str | os.PathLike | None = None, require_name: bool = False
) -> list[str]:
    """The template's prompt lines; `require_name` (embeddings) refuses lines without [name]."""
    path = resolve_template(template, extra_dir)
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise UserInputError(
            f"Prompt template {path} has no lines. Put at least one prompt such as '[filewords], [name]'."
        )
    if require_name:
        # A prompt without the embedding gives it no gradient (the WebUI's trainer died on an assertion).
        missing = [line for line in lines if "[name]" not in line]
        if missing:
            raise UserInputError(
                f"Prompt template {path.name} has {len(missing)} line(s) without [name], e.g. {missing[0]!r}: an "
                "embedding only learns from prompts that contain it. Add [name] to every line, or pick a template "
                "such as filewords_name.txt."
            )
    return lines


def caption_from_filename(path: str | os.PathLike, word_regex: str | None = None, join_string: str = " ") -> str:
    """The WebUI's caption for an image without a sidecar: the file name, optionally filtered by a regex."""
    text = _NUMBERS_AT_START.sub("", Path(path).stem)
    if word_regex:
        try:
            words = re.findall(word_regex, text)
        except re.error as e:
            raise UserInputError(f"Filename regex {word_regex!r} is not a valid regular expression: {e}.") from e
        text = (join_string or "").join(w if isinstance(w, str) else "".join(w) for w in words)
    return text


def image_caption(path: str | os.PathLike, word_regex: str | None = None, join_string: str = " ") -> str:
    """The .txt sidecar's text if there is one, else the caption derived from the file name."""
    text = read_caption(path)
    if text is not None:
        return text
    return caption_from_filename(path, word_regex, join_string)


@dataclass(frozen=True)
class PromptOptions:
    shuffle_tags: bool = False
    keep_first_tags: int = 0  # with shuffle: these leading tags stay in place (e.g. a character tag)
    tag_dropout: float = 0.0  # probability of dropping each (non-kept) tag
    # Booru tags like "zangoose_(pokemon)" would otherwise be read as emphasis by the prompt parser.
    escape_brackets: bool = True
    caption_dropout: float = 0.0  # probability that [filewords] is empty in a prompt (the whole caption dropped)
    token_warmup_min: int = 1  # kohya's token warmup: tags (after the kept ones) used at step 0 ...
    token_warmup_step: int = 0  # ... growing to the whole caption by this step; 0 = off

    @property
    def varies(self) -> bool:
        """True when the same caption yields different prompts from step to step."""
        return self.shuffle_tags or self.tag_dropout > 0 or self.caption_dropout > 0 or self.token_warmup_step > 0

    def tag_limit(self, step: int, n_tags: int) -> int:
        """How many of a caption's n_tags non-kept tags token warmup lets through at `step` (kohya's formula)."""
        if not self.token_warmup_step or step >= self.token_warmup_step:
            return n_tags
        grown = int(step * (n_tags - self.token_warmup_min) / self.token_warmup_step) + self.token_warmup_min
        return max(0, min(n_tags, grown))


_FILEWORDS_WITH_COMMA = re.compile(r"\[filewords\]\s*,\s*|\s*,\s*\[filewords\]")


def build_prompt(line: str, caption: str, name: str, options: PromptOptions, rng: random.Random, step: int = 0) -> str:
    """Fill one template line: [filewords] = the caption's tags after warmup/dropout/shuffle, [name] = the name.

    Random draws happen only for options that are on, so a run without them draws exactly what it always did.
    """
    if options.caption_dropout > 0 and rng.random() < options.caption_dropout:
        # Without its caption the prompt is the template around [name] alone; no dangling comma.
        return _FILEWORDS_WITH_COMMA.sub("", line).replace("[filewords]", "").replace("[name]", name)
    if options.varies:
        tags = [t.strip() for t in caption.split(",") if t.strip()]
        keep = tags[: options.keep_first_tags]
        rest = tags[options.keep_first_tags :]
        # Like kohya, warmup keeps the caption's first tags (the most telling, in booru order) before shuffling.
        rest = rest[: options.tag_limit(step, len(rest))]
        if options.tag_dropout > 0:
            rest = [t for t in rest if rng.random() >= options.tag_dropout]
        if options.shuffle_tags:
            rng.shuffle(rest)
        caption = ", ".join(keep + rest)
    if options.escape_brackets:
        caption = escape_brackets(caption)
    return line.replace("[filewords]", caption).replace("[name]", name)


def caption_tags(caption: str) -> set[str]:
    """The tags of a caption by identity (for checks such as 'the embedding name is already a tag')."""
    return {tag_key(t) for t in caption.split(",") if t.strip()}
