"""An onnxruntime session for a tagger: shape read from the model, provider choice, load/unload."""

from __future__ import annotations

import hashlib
import sys
import threading
from dataclasses import dataclass

import numpy as np

from embed_studio.errors import FileFormatError, UserInputError
from embed_studio.tagger.hub import ModelFiles
from embed_studio.tagger.labels import TagLabels, load_labels

DEVICES = ("auto", "cuda", "cpu")
# GPU providers tried in this order when the device is "auto"; the CPU provider is always last.
_GPU_PROVIDERS = ("CUDAExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider")


@dataclass(frozen=True)
class InputSpec:
    """The model's image input as the ONNX graph declares it."""

    name: str
    height: int
    width: int
    layout: str  # "NHWC" (every WD model) or "NCHW"
    batch: int | None  # fixed batch size, or None when the batch dimension is dynamic
    dtype: str = "float32"  # "float16" for half-precision exports


def read_input_spec(session) -> InputSpec:
    inp = session.get_inputs()[0]
    shape = list(inp.shape)
    if len(shape) != 4:
        raise FileFormatError(f"The tagger's input {inp.name} has shape {shape}; a 4-D image batch was expected.")
    if shape[3] == 3:
        layout, height, width = "NHWC", shape[1], shape[2]
    elif shape[1] == 3:
        layout, height, width = "NCHW", shape[2], shape[3]
    else:
        raise FileFormatError(f"The tagger's input {inp.name} has shape {shape}: no 3-channel axis found.")
    if not isinstance(height, int) or not isinstance(width, int) or height <= 0 or width <= 0:
        raise FileFormatError(f"The tagger's input {inp.name} has no fixed image size ({shape}); cannot size images.")
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    dtype = "float16" if inp.type == "tensor(float16)" else "float32"
    return InputSpec(name=inp.name, height=height, width=width, layout=layout, batch=batch, dtype=dtype)


def choose_providers(device: str = "auto", device_id: int = 0) -> tuple[list, str]:
    """The providers to ask onnxruntime for, and a note when the GPU cannot be used."""
    import onnxruntime as ort

    if device not in DEVICES:
        raise UserInputError(f"Unknown device {device!r}: use one of {', '.join(DEVICES)}.")
    if device == "cpu":
        return ["CPUExecutionProvider"], ""
    available = ort.get_available_providers()
    for name in _GPU_PROVIDERS:
        if name in available:
            if name == "CUDAExecutionProvider":
                # Share the card with torch: grow the arena only as needed and skip the
                # exhaustive cuDNN search that allocates big workspaces.
                opts = {
                    "device_id": device_id,
                    "arena_extend_strategy": "kSameAsRequested",
                    "cudnn_conv_algo_search": "HEURISTIC",
                }
                return [(name, opts), "CPUExecutionProvider"], ""
            return [name, "CPUExecutionProvider"], ""
    note = "No GPU provider in this onnxruntime (it is the CPU build); install onnxruntime-gpu to tag on the GPU."
    return ["CPUExecutionProvider"], note


def _preload_cuda_libraries() -> None:
    """Let onnxruntime-gpu find CUDA/cuDNN: torch's copies when torch is loaded, else the pip ones."""
    import onnxruntime as ort

    if "torch" in sys.modules:
        return  # torch has already loaded its CUDA libraries; onnxruntime reuses them
    preload = getattr(ort, "preload_dlls", None)  # onnxruntime >= 1.21
    if preload is not None:
        try:
            preload()
        except Exception:  # best effort: the provider check below reports what really happened
            pass


def model_key(files: ModelFiles) -> str:
    """Identifies a model file version for the probability cache without hashing 400 MB."""
    m, t = files.model_path.stat(), files.tags_path.stat()
    text = f"{files.model_path.resolve()}|{m.st_size}|{m.st_mtime_ns}|{t.st_size}|{t.st_mtime_ns}"
    return f"{files.name}-{hashlib.sha1(text.encode()).hexdigest()[:12]}"


class TaggerModel:
    """A loaded tagger. predict() is safe to call from several threads (onnxruntime allows it)."""

    def __init__(self, files: ModelFiles, device: str = "auto", device_id: int = 0):
        import onnxruntime as ort

        self.files = files
        self.name = files.name
        self.labels: TagLabels = load_labels(files.tags_path, files.spec.vocabulary if files.spec else "")
        providers, self.provider_note = choose_providers(device, device_id)
        wants_gpu = providers[0] != "CPUExecutionProvider"
        if wants_gpu:
            _preload_cuda_libraries()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(files.model_path), sess_options=options, providers=providers)
        except Exception as e:
            raise FileFormatError(
                f"onnxruntime cannot load {files.model_path} ({type(e).__name__}: {e}). "
                "The file may be incomplete: delete it so it is downloaded again, or check the onnxruntime version."
            ) from e
        self.input = read_input_spec(self.session)
        output = self.session.get_outputs()[0]
        self.output_name = output.name
        n_out = output.shape[-1] if output.shape else None
        if isinstance(n_out, int) and n_out != len(self.labels):
            raise FileFormatError(
                f"{files.tags_path.name} lists {len(self.labels)} tags but the model outputs {n_out} scores: "
                "the CSV belongs to another model. Put the model's own tag list beside it."
            )
        if wants_gpu and self.active_provider == "CPUExecutionProvider":
            self.provider_note = (
                f"{providers[0][0] if isinstance(providers[0], tuple) else providers[0]} failed to start "
                "(CUDA/cuDNN libraries not found or mismatched; see the console); running on the CPU."
            )
        self.key = model_key(files)
        self.run_count = 0  # session.run calls, for the cache tests and the summary
        self._count_lock = threading.Lock()

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    @property
    def active_provider(self) -> str:
        return self.providers[0]

    def describe_provider(self) -> str:
        text = f"{self.name} on {self.active_provider}"
        return f"{text} — {self.provider_note}" if self.provider_note else text

    def batch_size(self, wanted: int) -> int:
        """How many images one run takes: the model's fixed batch, else `wanted`."""
        return self.input.batch or max(1, int(wanted))

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities [n, n_tags] for a stack of prepared HWC images [n, H, W, 3]."""
        n = images.shape[0]
        batch = images if self.input.layout == "NHWC" else images.transpose(0, 3, 1, 2)
        fixed = self.input.batch
        if fixed and n != fixed:
            if n > fixed:
                raise ValueError(f"model takes {fixed} images per run, got {n}")
            pad = np.zeros((fixed - n, *batch.shape[1:]), dtype=batch.dtype)
            batch = np.concatenate([batch, pad])
        out = self.session.run(
            [self.output_name], {self.input.name: np.ascontiguousarray(batch, dtype=self.input.dtype)}
        )[0]
        with self._count_lock:
            self.run_count += 1
        return np.asarray(out, dtype=np.float32).reshape(out.shape[0], -1)[:n]


_pool_lock = threading.Lock()
_pool: dict[tuple, TaggerModel] = {}


def get_model(files: ModelFiles, device: str = "auto", device_id: int = 0) -> TaggerModel:
    """The loaded model for these files, loading it on first use (one copy per process)."""
    key = (str(files.model_path), str(files.tags_path), device, device_id)
    with _pool_lock:
        model = _pool.get(key)
        if model is None:
            model = TaggerModel(files, device, device_id)
            _pool[key] = model
        return model


def loaded_models() -> list[TaggerModel]:
    with _pool_lock:
        return list(_pool.values())


def unload_models() -> int:
    """Free every loaded tagger (GPU memory included); returns how many were loaded."""
    with _pool_lock:
        count = len(_pool)
        _pool.clear()
    # onnxruntime frees a session's memory when its last reference goes (no cycles hold it);
    # a run still in progress keeps its own reference and lets go when it ends.
    return count
