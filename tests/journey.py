"""The whole journey of a new user, clicked in a browser and counted: shared by the standalone test
(tests/ui/test_journey.py) and the real-WebUI one (tests/webui/test_webui_journey.py).

Every interaction goes through Recorder, which counts it: a click (tab switches, accordions and Enter included)
or a text entry is one action. Actions are counted in two phases:

- "setting": what only scales the run down for a test (the test booru server's URL and no pause between its
  requests, 12 posts, the tiny tagger's folder, the tiny model's path, 60 steps, batch size 2, a preview every
  10 steps, a 64x64 training area) and the clicks that reach those fields. A user sets none of these, or sets them once; they are done
  before the journey starts and reported apart.
- "journey": from typing the search query to a finished training run, with every other field at the guides'
  defaults. MAX_ACTIONS bounds it.

Not counted: waiting (the test waits on what the page shows, never on the clock), reading the page, the
screenshots, and checks of the files on disk.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

MAX_ACTIONS = 10
QUERY = "zangoose"
POSTS = 12
STEPS = 60  # long enough that Interrupt, clicked after the first step shows, lands before the end on a busy CI
BATCH_SIZE = 2
PREVIEW_EVERY = 30
SIZE = 64  # the training area: the tiny models at the guides' 512 take minutes on a CPU
WAIT_MS = 300_000  # a safety net against a hung job on a slow machine, not a timing assertion
VIEWPORT = {"width": 1280, "height": 800}
TESTS = Path(__file__).resolve().parent


def _load(name: str, path: Path):
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up by name
        spec.loader.exec_module(module)
    return module


fake_booru = _load("es_journey_fake_booru", TESTS / "booru" / "fake_booru.py")
tagger_models = _load("es_journey_tagger_models", TESTS / "tagger" / "tagger_test_models.py")

# The tiny tagger: sure of two generic tags and of the character's claws on every image.
JOURNEY_TAGS = [
    ("general", 9, (0, 0, 0), 2.0),
    ("sensitive", 9, (0, 0, 0), -2.0),
    ("questionable", 9, (0, 0, 0), -3.0),
    ("explicit", 9, (0, 0, 0), -4.0),
    ("solo", 0, (0, 0, 0), 2.2),
    ("looking_at_viewer", 0, (0, 0, 0), 1.0),
    ("claws", 0, (0, 0, 0), 2.0),
]
SCENERY = ("grass", "flower", "rock", "tree")


def character_tags(query: str = QUERY) -> tuple[str, ...]:
    """What defines the character on every image: the suggestions the Dataset panel checks, the journey deletes."""
    return tuple(sorted(("claws", query)))


def journey_posts(query: str = QUERY, n: int = POSTS) -> list:
    """Posts of one character: its species (the query) and claws on all, scenery and artists that vary."""
    posts = []
    for i in range(n):
        pid = 2000 - i
        tags = {
            "general": ["solo", "claws", SCENERY[i % len(SCENERY)]],
            "species": [query],
            "artist": [f"artist_{i % 3}"],
        }
        data = fake_booru.image_bytes(pid, size=(48, 40))
        posts.append(fake_booru.FakePost(id=pid, data=data, tags=tags, rating="seq"[i % 3]))
    return posts


def build_journey_tagger(folder: Path):
    return tagger_models.build_tagger(folder, tags=JOURNEY_TAGS)


@dataclass
class Action:
    phase: str  # "setting" or "journey"
    kind: str  # "click" or "type"
    what: str


@dataclass
class Recorder:
    """Every click and text entry of a test, counted by phase; screenshots of every step."""

    page: object
    shots: Path
    phase: str = "setting"
    actions: list[Action] = field(default_factory=list)
    shot_names: list[str] = field(default_factory=list)

    def _locate(self, target):
        return self.page.locator(target).first if isinstance(target, str) else target

    def click(self, target, what: str) -> None:
        self._locate(target).click()
        self.actions.append(Action(self.phase, "click", what))

    def press(self, target, key: str, what: str) -> None:
        self._locate(target).press(key)
        self.actions.append(Action(self.phase, "click", what))

    def type(self, elem_id: str, value, what: str) -> None:
        self.page.locator(f"#{elem_id} textarea, #{elem_id} input").first.fill(str(value))
        self.actions.append(Action(self.phase, "type", what))

    def count(self, phase: str) -> int:
        return sum(1 for a in self.actions if a.phase == phase)

    def report(self) -> str:
        lines = []
        for phase in ("setting", "journey"):
            acts = [a for a in self.actions if a.phase == phase]
            clicks = sum(1 for a in acts if a.kind == "click")
            lines.append(f"{phase}: {len(acts)} actions ({clicks} clicks, {len(acts) - clicks} text entries)")
            lines += [f"  {i}. {a.kind} {a.what}" for i, a in enumerate(acts, 1)]
        return "\n".join(lines)

    def shot(self, name: str, focus: str | None = None) -> None:
        """A screenshot of the viewport, at the page's top or centred on `focus` (an element id); palette-compressed
        when saved for the docs (EMBED_STUDIO_SCREENSHOTS)."""
        self.shots.mkdir(parents=True, exist_ok=True)
        self.page.evaluate(
            "(id) => id ? document.getElementById(id).scrollIntoView({block: 'center'}) : window.scrollTo(0, 0)", focus
        )
        path = self.shots / f"{len(self.shot_names) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path))
        if os.environ.get("EMBED_STUDIO_SCREENSHOTS"):
            from PIL import Image

            with Image.open(path) as image:
                small = image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
            small.save(path, optimize=True)
        self.shot_names.append(path.name)


def screenshot_dir(tmp_path: Path, host: str) -> Path:
    wanted = os.environ.get("EMBED_STUDIO_SCREENSHOTS")
    return Path(wanted) / host if wanted else tmp_path / "screenshots"


class Journey:
    """Drives the studio's panels in a page (standalone, or the WebUI's Embed Studio tab) through a Recorder."""

    def __init__(self, rec: Recorder, query: str = QUERY):
        self.rec = rec
        self.page = rec.page
        self.query = query

    # -- waiting on what the page shows ------------------------------------------------------------
    def wait_text(self, elem_id: str, pattern: str, timeout: float = WAIT_MS) -> str:
        """Wait until a component (any node with the id: gradio 3 repeats it) shows text matching a regex."""
        self.page.wait_for_function(
            "([id, p]) => [...document.querySelectorAll('#' + id)].some(e => new RegExp(p).test("
            "(e.value ?? '') + ' ' + e.innerText + ' ' + [...e.querySelectorAll('textarea, input')].map(t => t.value)"
            ".join(' ')))",
            arg=[elem_id, pattern], timeout=timeout,
        )  # fmt: skip
        return self.page.locator(f"#{elem_id}").last.inner_text()  # the innermost: the text once

    def wait_visible(self, elem_id: str) -> None:
        self.page.locator(f"#{elem_id}").first.wait_for(state="visible", timeout=WAIT_MS)

    def panel(self, title: str) -> None:
        self.rec.click(self.page.locator("#es-tabs > .tab-nav button", has_text=title).first, f"tab {title}")

    def train_subtab(self, title: str) -> None:
        self.rec.click(self.page.locator("#es-train-tabs > .tab-nav button", has_text=title).first, f"sub-tab {title}")

    # -- before the journey: what scales the run down for a test ------------------------------------
    def scale_down(
        self, booru_url: str, tagger_folder: Path, model_path: Path | None, grad_accum: int | None = None
    ) -> None:
        """The test-scale settings; `grad_accum` where a model is too slow for the guides' 5 batches a step."""
        rec = self.rec
        rec.phase = "setting"
        rec.type("es-booru-limit", POSTS, "How many images: 12")
        rec.click(self.page.locator("#es-booru-advanced").get_by_text("Advanced: server"), "open Advanced: server")
        rec.type("es-booru-base-url", booru_url, "Server URL: the test booru")
        rec.type("es-booru-interval", 0, "Seconds between API requests: 0")
        self.panel("Tagger")
        rec.type("es-tagger-model", tagger_folder, "Model: the tiny tagger's folder")
        rec.press("#es-tagger-model input", "Enter", "Enter (keep the typed model)")
        self.panel("Train")
        if model_path is not None:
            rec.type("es-train-model", model_path, "Model: the tiny model's path")
        self.train_subtab("Train")
        rec.type("es-train-max-steps", STEPS, f"Max steps: {STEPS}")
        rec.type("es-train-batch-size", BATCH_SIZE, "Batch size: 2")
        rec.type("es-train-preview-every", PREVIEW_EVERY, f"Preview every: {PREVIEW_EVERY}")
        rec.type("es-train-width", SIZE, "Width: 64")
        rec.type("es-train-height", SIZE, "Height: 64")
        if grad_accum is not None:
            rec.type("es-train-grad-accum", grad_accum, f"Gradient accumulation: {grad_accum}")
        self.panel("Booru")

    # -- the journey --------------------------------------------------------------------------------
    def fetch(self) -> None:
        self.rec.phase = "journey"
        self.rec.type("es-booru-query", self.query, f"Search query: {self.query}")
        self.rec.click("#es-booru-fetch", "Fetch")
        self.wait_visible("es-booru-next")
        self.wait_text("es-booru-summary", f"{POSTS} downloaded")
        self.rec.shot("fetched")

    def tag(self) -> str:
        self.rec.click("#es-booru-next", "Tag these images →")
        text = self.wait_text("es-tagger-status", rf"{POSTS} caption\(s\) written")
        self.wait_visible("es-tagger-next")
        self.rec.shot("tagged")
        return text

    def prune(self) -> list[str]:
        self.rec.click("#es-tagger-next", "Prune tags →")
        self.wait_text("es-dataset-status", f"{POSTS} images")
        self.page.wait_for_function(
            "(n) => document.querySelectorAll('#es-dataset-candidates input:checked').length >= n",
            arg=len(character_tags(self.query)), timeout=WAIT_MS,
        )  # fmt: skip
        checked = self.page.eval_on_selector_all(
            "#es-dataset-candidates label:has(input:checked)", "ls => ls.map(l => l.innerText.trim())"
        )
        self.rec.shot("suggested", "es-dataset-candidates")
        self.rec.click("#es-dataset-delete-candidates", "Delete checked")
        self.wait_text("es-dataset-status", f"{POSTS} caption\\(s\\) changed")
        self.rec.shot("deleted")
        return checked

    def save_and_create(self) -> None:
        self.rec.click("#es-dataset-next", "Save & train →")
        self.wait_visible("es-train-emb-create-train")
        self.wait_text("es-train-emb-name", self.query)
        self.rec.shot("create")

    def create_and_train(self) -> None:
        self.rec.click("#es-train-emb-create-train", "Create & train")
        self.wait_text("es-train-status", r"step [1-9]\d*/\d+ · loss")
        self.rec.shot("training")

    def interrupt(self) -> str:
        self.rec.click("#es-train-interrupt", "Interrupt")
        text = self.wait_text("es-train-status", "Interrupted")
        self.rec.shot("interrupted")
        return text

    def resume_and_finish(self) -> str:
        self.rec.click("#es-train-resume", "Resume")
        text = self.wait_text("es-train-status", "Done:")
        self.page.wait_for_selector("#es-train-loss img[src^='data:image']", timeout=WAIT_MS)
        self.rec.shot("done", "es-train-gallery")
        return text

    def run(self) -> dict[str, str | list[str]]:
        """The journey after scale_down(); what the page said at each step, for the test's checks."""
        try:
            return self._run()
        except Exception:
            self.rec.shot("failed")  # what the page showed when a step did not end as expected
            raise

    def _run(self) -> dict[str, str | list[str]]:
        self.fetch()
        seen: dict[str, str | list[str]] = {"tagged": self.tag(), "checked": self.prune()}
        seen["folder"] = self.page.locator("#es-dataset-folder textarea").first.input_value()
        self.save_and_create()
        self.create_and_train()
        seen["interrupted"] = self.interrupt()
        seen["done"] = self.resume_and_finish()
        return seen


def captions(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.txt"))}
