"""TensorBoard scalars of a run (loss, learning rate, validation, vector norms) when tensorboard is installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from embed_studio.errors import UserInputError

TENSORBOARD_FOLDER = "tensorboard"


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def require_tensorboard() -> None:
    if not tensorboard_available():
        raise UserInputError(
            "TensorBoard logging needs the 'tensorboard' package, which is not installed. Install it into the "
            "Python that runs Embed Studio (pip install tensorboard) or turn the option off; the loss plot and "
            "loss.csv work without it."
        )


class Scalars:
    """Writes LOGDIR/tensorboard/events.* (one run per log folder; a resumed run appends its later steps)."""

    def __init__(self, log_dir: Path):
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir / TENSORBOARD_FOLDER))

    def add(self, step: int, **values: float) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def flush(self) -> None:
        self.writer.flush()
