"""The Train panel's loss plot follows the preview-score log too, not only loss.csv."""

from __future__ import annotations

import json

from embed_studio.jobs import DONE, JobStatus
from embed_studio.train.scoring import SCORE_LOG_NAME
from embed_studio.ui.train_tab import TrainTab


def test_the_panel_redraws_when_only_the_scores_changed(tmp_path):
    (tmp_path / "loss.csv").write_text(
        "step,epoch,loss,lr,images_per_s\n" + "".join(f"{s},0,0.5,0.001,1\n" for s in range(1, 11)), encoding="utf-8"
    )
    status = JobStatus(
        "train-1", "train", DONE, 10, 10, "", None, None, None, None, None, stats={"log_dir": str(tmp_path)}
    )
    sent = {"images": None, "plot": None, "plotted_at": None}
    first = TrainTab._plot(status, sent)
    assert first.size == (700, 350)
    assert isinstance(TrainTab._plot(status, sent), dict)  # nothing changed: an empty update, no image
    # The scoring of the last preview lands after the loss log's last write (the end of a run).
    (tmp_path / SCORE_LOG_NAME).write_text(json.dumps({"step": 10, "score": 2.0, "of": 3}) + "\n", encoding="utf-8")
    redrawn = TrainTab._plot(status, sent)
    assert redrawn.size == (700, 525)
