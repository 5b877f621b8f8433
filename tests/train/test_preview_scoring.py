"""Preview scoring: a real run on the tiny SD model, its previews tagged by a real ONNX tagger session."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embed_studio.cli import main

sys.path.insert(0, str(Path(__file__).parents[1] / "tagger"))
from tagger_test_models import build_tagger  # noqa: E402

PURPLE = (162, 28, 175)  # lossplot.SCORE_COLOUR
CHARACTER = ["char 0", "char 1", "char 2", "red eyes"]
TAGGER_SIZE = 32
STEPS = 4


@pytest.fixture
def scored_dataset(tmp_path) -> Path:
    folder = tmp_path / "dataset"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
        extra = ", dog" if i == 0 else ""  # on a quarter of the images: not the character's
        (folder / f"img{i}.txt").write_text(f"char 0, solo, char 1, red eyes, char 2{extra}", encoding="utf-8")
    return folder


@pytest.fixture
def fresh_embedding(tmp_path, backend):
    from embed_studio.formats.embedding import save_embedding
    from embed_studio.train.create import create_embedding

    original = tmp_path / "original.pt"
    save_embedding(create_embedding(backend, "mychar", "red eyes", 2), original)

    def copy(folder: Path) -> Path:
        folder.mkdir(parents=True)
        shutil.copy(original, folder / "mychar.pt")
        return folder

    return copy


def _train(tiny_model, dataset, folder, log_dir, *extra) -> int:
    return main(
        [
            "train", "embedding", "--model", str(tiny_model), "--dataset", str(dataset), "--name", "mychar",
            "--dir", str(folder), "--log-dir", str(log_dir), "--steps", str(STEPS), "--lr", "0.01",
            "--batch-size", "2", "--gradient-accumulation", "1", "--width", "64", "--height", "64",
            "--bucket-step", "32", "--save-every", "0", "--preview-every", "1", "--preview-steps", "2",
            "--preview-seed", "-1", "--seed", "7", "--no-preview-with-embedding", *extra,
        ]
    )  # fmt: skip


def _red(path: Path) -> float:
    """The mean red the tagger sees (its own preprocessing: BGR at its input size)."""
    from embed_studio.tagger.preprocess import load_for_model

    return float(load_for_model(path, TAGGER_SIZE)[..., 2].mean()) / 255


def _purple(path) -> int:
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int((np.abs(pixels - np.array(PURPLE)).sum(axis=-1) < 40).sum())


def test_training_scores_every_preview_with_the_tagger(tmp_path, tiny_model, scored_dataset, fresh_embedding):
    from embed_studio.dataset.captions import DatasetCaptions
    from embed_studio.tagger.options import TaggerOptions
    from embed_studio.tagger.pipeline import tag_image
    from embed_studio.train.scoring import SCORE_LOG_NAME, count_shown

    # A first run without scoring shows what the previews look like to the tagger: each step's mean red differs.
    probe_logs = tmp_path / "probe-logs"
    assert _train(tiny_model, scored_dataset, fresh_embedding(tmp_path / "probe"), probe_logs) == 0
    reds = sorted(_red(probe_logs / "images" / f"mychar-{s}.png") for s in range(1, STEPS + 1))
    assert len(set(reds)) == STEPS
    # So a tagger whose "char k" tag switches on above the midpoint between two steps' reds tells the steps apart.
    cuts = [(a + b) / 2 for a, b in zip(reds, reds[1:], strict=False)]
    steep = 4.0 / min(b - a for a, b in zip(reds, reds[1:], strict=False))
    tags = [(f"char_{k}", 0, (0, 0, steep), -steep * cut) for k, cut in enumerate(cuts)]
    tags += [("solo", 0, (0, 0, 0), 3.0), ("red_eyes", 0, (0, 0, 0), -5.0), ("dog", 0, (0, 0, 0), 3.0)]
    tagger = build_tagger(tmp_path / "tagger", tags=tags, size=TAGGER_SIZE)

    logs = tmp_path / "logs"
    assert _train(tiny_model, scored_dataset, fresh_embedding(tmp_path / "run"), logs, "--preview-score",
                  "--score-tagger", str(tagger.folder)) == 0  # fmt: skip

    rows = [json.loads(line) for line in (logs / SCORE_LOG_NAME).read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))  # one row per saved preview step
    suggested = DatasetCaptions.load(scored_dataset).suggest_character_tags(0.5).candidates
    assert rows[0]["tags"] == [r.tag for r in suggested] and sorted(rows[0]["tags"]) == sorted(CHARACTER)
    for row in rows:
        preview = logs / "images" / f"mychar-{row['step']}.png"
        alone = tag_image(preview, str(tagger.folder), TaggerOptions())  # the Tagger panel's call, on its own
        shown = count_shown(row["tags"], alone.tags)
        assert row["previews"] == [{"image": preview.name, "count": len(shown), "shown": shown}]
        assert row["score"] == len(shown) and row["of"] == 4
        assert "dog" in alone.tags and "dog" not in row["previews"][0]["shown"]  # shown, but not the character's
    assert len({r["score"] for r in rows}) == STEPS  # the score follows the image, not a constant

    # `embed-studio plot` draws the scores under the loss; the same loss log without them draws none.
    assert main(["plot", str(logs)]) == 0
    assert _purple(logs / "loss.png") > 50
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(logs / "loss.csv", plain / "loss.csv")
    assert main(["plot", str(plain)]) == 0 and _purple(plain / "loss.png") == 0


def test_scores_and_best_step_in_the_plot_data(tmp_path):
    from embed_studio.train.lossplot import render_loss_plot
    from embed_studio.train.scoring import SCORE_LOG_NAME, read_score_log

    (tmp_path / "loss.csv").write_text(
        "step,epoch,loss,lr,images_per_s\n" + "".join(f"{s},0,0.5,0.001,1\n" for s in range(1, 9)), encoding="utf-8"
    )
    rows = [{"step": s, "score": v, "of": 3} for s, v in ((2, 1.0), (4, 3.0), (6, 3.0), (8, 2.0))]
    text = "".join(json.dumps(r) + "\n" for r in rows) + "not json\n" + json.dumps({"step": "x", "score": 1}) + "\n"
    (tmp_path / SCORE_LOG_NAME).write_text(text, encoding="utf-8")
    series = read_score_log(tmp_path / SCORE_LOG_NAME)
    assert series.steps == [2, 4, 6, 8] and series.best() == (4, 3.0)  # a tie: the earlier step
    with_scores = render_loss_plot(tmp_path / "loss.csv")
    (tmp_path / SCORE_LOG_NAME).unlink()
    without = render_loss_plot(tmp_path / "loss.csv")
    assert with_scores.height > without.height


def test_no_tagger_model_is_one_line_and_training_runs_unscored(tmp_path, backend, make_config, dataset):
    from embed_studio.formats.embedding import save_embedding
    from embed_studio.train.create import create_embedding
    from embed_studio.train.loop import train
    from embed_studio.train.scoring import SCORE_LOG_NAME

    target = tmp_path / "emb" / "mychar.pt"
    target.parent.mkdir()
    save_embedding(create_embedding(backend, "mychar", "red eyes", 2), target)
    target2 = tmp_path / "emb2" / "mychar.pt"
    target2.parent.mkdir()
    shutil.copy(target, target2)
    lines: list[str] = []
    config = make_config(target, preview_every=1, max_steps=2, preview_score=True, preview_with_embedding=False)
    result = train(config, backend, log=lines.append)
    assert sum("no tagger model is set" in line for line in lines) == 1  # said once, as it happens
    assert result.step == 2 and len(result.previews) == 2
    scoring = [w for w in result.warnings if "scoring" in w]
    assert len(scoring) == 1 and "no tagger model is set" in scoring[0] and "without scoring" in scoring[0]
    assert not (config.log_path / SCORE_LOG_NAME).exists()

    # A tagger that is not there: one line naming it, and the run still trains.
    config = make_config(
        target2, preview_every=1, max_steps=1, preview_score=True, score_tagger=str(tmp_path / "no-such-tagger"),
        score_tags="black hair, red eyes", preview_with_embedding=False,
    )  # fmt: skip
    result = train(config, backend)
    assert result.step == 1 and len(result.previews) == 1
    scoring = [w for w in result.warnings if "scoring" in w]
    assert len(scoring) == 1 and scoring[0].startswith("Preview scoring is off: Unknown tagger model")


def test_every_preview_prompt_of_a_step_is_scored_and_averaged(tmp_path):
    from embed_studio.tagger.pipeline import load_tagger
    from embed_studio.train.config import TrainConfig
    from embed_studio.train.previews import preview_images
    from embed_studio.train.scoring import PreviewScorer, ScoreLog, read_score_log

    config = TrainConfig(
        kind="embedding", model="m", dataset="d", target=str(tmp_path / "mychar.pt"), preview_prompts="a\n--prompt b"
    )
    images = preview_images(config, tmp_path, 5)
    assert [p.name for p in images] == ["mychar-5.png", "mychar-5-1.png", "mychar-5-2.png"]
    images[0].parent.mkdir()
    for path, colour in zip(images, [(200, 30, 30), (30, 30, 200), (200, 30, 30)], strict=True):
        Image.new("RGB", (64, 64), colour).save(path)
    tagger = build_tagger(tmp_path / "tagger")  # red images: red_theme and kiana_(honkai); blue: blue_theme
    log = ScoreLog(tmp_path / "preview_scores.jsonl")
    scorer = PreviewScorer(load_tagger(str(tagger.folder)), ["red theme", "Blue_Theme", "kiana (honkai)"], log)
    row = scorer.score(5, images)
    assert tagger.probs((200, 30, 30))["kiana_(honkai)"] > 0.85 > tagger.probs((30, 30, 200))["kiana_(honkai)"]
    red = ["red theme", "kiana (honkai)"]
    assert [p["shown"] for p in row["previews"]] == [red, ["Blue_Theme"], red]  # in the list's spelling
    assert [p["count"] for p in row["previews"]] == [2, 1, 2]
    assert row["score"] == 5 / 3 and row["of"] == 3
    scorer.score(6, images[1:2])
    assert read_score_log(log.path).steps == [5, 6]
    log.truncate_after(5)  # a resume at step 5 drops the later row, on disk too
    assert read_score_log(log.path).steps == [5]
