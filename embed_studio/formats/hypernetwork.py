"""Hypernetworks in the WebUI's .pt format (Hypernetwork.save/load of v1.10.1) and their module layout."""

from __future__ import annotations

import collections
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embed_studio.errors import FileFormatError

if TYPE_CHECKING:
    import torch

# Hypernetwork.save's keys after the per-size entries, in its order.
WEBUI_HYPERNETWORK_KEYS = (
    "step",
    "name",
    "layer_structure",
    "activation_func",
    "is_layer_norm",
    "weight_initialization",
    "sd_checkpoint",
    "sd_checkpoint_name",
    "activate_output",
    "use_dropout",
    "dropout_structure",
    "last_layer_dropout",
    "optional_info",
)
WEIGHT_INITIALIZATIONS = ("Normal", "KaimingUniform", "KaimingNormal", "XavierUniform", "XavierNormal")


@dataclass
class HypernetworkData:
    name: str
    layers: dict[int, list[dict[str, torch.Tensor]]]  # context size -> [k module state dict, v module state dict]
    layer_structure: list[float] = field(default_factory=lambda: [1, 2, 1])
    activation_func: str = "linear"
    is_layer_norm: bool = False
    weight_initialization: str = "Normal"
    use_dropout: bool = False
    dropout_structure: list[float] | None = None
    activate_output: bool = False
    last_layer_dropout: bool = False
    optional_info: str | None = None
    step: int = 0
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def sizes(self) -> list[int]:
        return sorted(self.layers)

    def effective_dropout_structure(self) -> list[float]:
        """What the WebUI builds with: the stored structure, or the one derived from the flags."""
        if self.dropout_structure is not None:
            return list(self.dropout_structure)
        return webui_dropout_structure(self.layer_structure, self.use_dropout, self.last_layer_dropout)

    def layout(self) -> list[tuple[str, Any]]:
        """The layers the WebUI builds for this file (module_layout), the same for every size."""
        return module_layout(
            self.layer_structure,
            self.activation_func,
            self.is_layer_norm,
            self.effective_dropout_structure(),
            self.activate_output,
        )


def webui_dropout_structure(
    layer_structure: list[float] | None, use_dropout: bool, last_layer_dropout: bool
) -> list[float]:
    """The WebUI's parse_dropout_structure: 0 around the ends, 0.3 on hidden layers when dropout is on."""
    structure = [1, 2, 1] if layer_structure is None else list(layer_structure)
    if not use_dropout:
        return [0] * len(structure)
    hidden = [0.3] * (len(structure) - 3)
    return [0, *hidden, 0.3 if last_layer_dropout else 0, 0]


def activation_classes() -> dict[str, type]:
    """The WebUI's HypernetworkModule.activation_dict: its named few plus every torch activation by lower name."""
    import inspect

    import torch

    table: dict[str, type] = {
        "linear": torch.nn.Identity,
        "relu": torch.nn.ReLU,
        "leakyrelu": torch.nn.LeakyReLU,
        "elu": torch.nn.ELU,
        "swish": torch.nn.Hardswish,
        "tanh": torch.nn.Tanh,
        "sigmoid": torch.nn.Sigmoid,
    }
    module = torch.nn.modules.activation
    for cls_name, cls in inspect.getmembers(module, inspect.isclass):
        if cls.__module__ == module.__name__:
            table[cls_name.lower()] = cls
    return table


def module_layout(
    layer_structure: list[float],
    activation_func: str | None,
    is_layer_norm: bool,
    dropout_structure: list[float] | None,
    activate_output: bool,
) -> list[tuple[str, Any]]:
    """The WebUI's HypernetworkModule.linear as (kind, arg) items, in order; the index is the state-dict key.

    Kinds: ('linear', (in_mult, out_mult)), ('activation', name), ('layer_norm', out_mult), ('dropout', p).
    """
    if len(layer_structure) < 2 or layer_structure[0] != 1 or layer_structure[-1] != 1:
        raise FileFormatError(f"layer structure {layer_structure} must start and end with 1.")
    n = len(layer_structure)
    layout: list[tuple[str, Any]] = []
    for i in range(n - 1):
        layout.append(("linear", (layer_structure[i], layer_structure[i + 1])))
        last = i >= n - 2
        if activation_func not in (None, "linear") and not (last and not activate_output):
            layout.append(("activation", activation_func))
        if is_layer_norm:
            layout.append(("layer_norm", layer_structure[i + 1]))
        if dropout_structure is not None and dropout_structure[i + 1] > 0:
            layout.append(("dropout", dropout_structure[i + 1]))
    return layout


def build_module_stack(dim: int, layout: list[tuple[str, Any]]) -> torch.nn.Sequential:
    """A torch Sequential with exactly the WebUI's layers of `layout` for one context size (torch's default weights).

    Wrap it as `.linear` of a module (or load keys without the 'linear.' prefix) to use WebUI state dicts.
    """
    import torch

    activations = activation_classes()
    items = []
    for kind, arg in layout:
        if kind == "linear":
            items.append(torch.nn.Linear(int(dim * arg[0]), int(dim * arg[1])))
        elif kind == "activation":
            if arg not in activations:
                raise FileFormatError(f"unsupported hypernetwork activation function '{arg}'.")
            items.append(activations[arg]())
        elif kind == "layer_norm":
            items.append(torch.nn.LayerNorm(int(dim * arg)))
        else:
            items.append(torch.nn.Dropout(p=arg))
    return torch.nn.Sequential(*items)


def _module_metadata(layout: list[tuple[str, Any]]) -> collections.OrderedDict:
    # What nn.Module.state_dict attaches as _metadata for a HypernetworkModule: every submodule at version 1.
    meta = collections.OrderedDict([("", {"version": 1}), ("linear", {"version": 1})])
    for i in range(len(layout)):
        meta[f"linear.{i}"] = {"version": 1}
    return meta


def _state_dict_for_save(sd: dict[str, Any], metadata: collections.OrderedDict) -> collections.OrderedDict:
    import torch

    out = collections.OrderedDict(
        (k, v.detach().to("cpu").contiguous().clone() if isinstance(v, torch.Tensor) else v) for k, v in sd.items()
    )
    out._metadata = metadata  # type: ignore[attr-defined]
    return out


def hypernetwork_to_webui_dict(data: HypernetworkData) -> dict[Any, Any]:
    """The dict Hypernetwork.save writes: size -> (k, v) state dicts, then its settings, then our extras."""
    dropout = data.effective_dropout_structure()
    layout = data.layout()
    out: dict[Any, Any] = {}
    for size in sorted(data.layers):
        pair = data.layers[size]
        if len(pair) != 2:
            raise FileFormatError(f"hypernetwork size {size} needs a k and a v state dict, got {len(pair)}.")
        out[int(size)] = tuple(_state_dict_for_save(sd, _module_metadata(layout)) for sd in pair)
    out.update(
        {
            "step": int(data.step),
            "name": data.name,
            "layer_structure": list(data.layer_structure),
            "activation_func": data.activation_func,
            "is_layer_norm": bool(data.is_layer_norm),
            "weight_initialization": data.weight_initialization,
            "sd_checkpoint": data.sd_checkpoint,
            "sd_checkpoint_name": data.sd_checkpoint_name,
            "activate_output": bool(data.activate_output),
            "use_dropout": bool(data.use_dropout),
            "dropout_structure": dropout,
            # The WebUI recomputes this flag from the structure when it saves.
            "last_layer_dropout": dropout[-2] != 0,
            "optional_info": data.optional_info or None,
        }
    )
    for key, value in data.extra.items():
        if key not in out:
            out[key] = value
    return out


def hypernetwork_from_dict(state: Any, name: str, source: str | os.PathLike = "hypernetwork") -> HypernetworkData:
    """Interpret a loaded hypernetwork dict with the defaults of the WebUI's Hypernetwork.load."""
    if not isinstance(state, dict):
        raise FileFormatError(f"{source}: not a hypernetwork (it holds {type(state).__name__}).")
    layers: dict[int, list[dict[str, Any]]] = {}
    for key, value in state.items():
        if type(key) is int:
            if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(isinstance(v, dict) for v in value):
                raise FileFormatError(f"{source}: hypernetwork size {key} is not a (k, v) pair of state dicts.")
            layers[key] = [_fix_old_keys(dict(v)) for v in value]
    if not layers:
        if "string_to_param" in state:
            raise FileFormatError(f"{source}: this is a textual-inversion embedding, not a hypernetwork.")
        raise FileFormatError(f"{source}: not a hypernetwork (no per-size layer weights).")
    dropout = state.get("dropout_structure")
    use_dropout = True if dropout is not None and any(dropout) else bool(state.get("use_dropout", False))
    last_layer_dropout = bool(state.get("last_layer_dropout", False))
    layer_structure = list(state.get("layer_structure") or [1, 2, 1])
    if dropout is None:
        dropout = webui_dropout_structure(layer_structure, use_dropout, last_layer_dropout)
    return HypernetworkData(
        name=state["name"] if isinstance(state.get("name"), str) else name,
        layers=layers,
        layer_structure=layer_structure,
        activation_func=state.get("activation_func") or "linear",
        is_layer_norm=bool(state.get("is_layer_norm", False)),
        weight_initialization=state.get("weight_initialization") or "Normal",
        use_dropout=use_dropout,
        dropout_structure=list(dropout),
        activate_output=bool(state.get("activate_output", True)),
        last_layer_dropout=last_layer_dropout,
        optional_info=state.get("optional_info"),
        step=int(state.get("step") or 0),
        sd_checkpoint=state.get("sd_checkpoint"),
        sd_checkpoint_name=state.get("sd_checkpoint_name"),
        extra={k: v for k, v in state.items() if type(k) is not int and k not in WEBUI_HYPERNETWORK_KEYS},
    )


def _fix_old_keys(sd: dict[str, Any]) -> dict[str, Any]:
    # Very early hypernetworks named their two layers linear1/linear2; the WebUI renames them on load.
    renames = {
        "linear1.bias": "linear.0.bias",
        "linear1.weight": "linear.0.weight",
        "linear2.bias": "linear.1.bias",
        "linear2.weight": "linear.1.weight",
    }
    return {renames.get(k, k): v for k, v in sd.items()}


def load_hypernetwork(path: str | os.PathLike) -> HypernetworkData:
    """Read a WebUI hypernetwork .pt; raises FileFormatError naming the file for anything else."""
    from embed_studio.formats.torchfile import load_pt

    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{path}: file not found.")
    return hypernetwork_from_dict(load_pt(path), path.stem, path)


def save_hypernetwork(data: HypernetworkData, path: str | os.PathLike) -> None:
    """Write every key Hypernetwork.save writes, in a layout the WebUI's safe unpickler accepts; atomic."""
    from embed_studio.formats.torchfile import save_webui_pt

    path = Path(path)
    if path.suffix.lower() != ".pt":
        raise FileFormatError(f"{path}: the WebUI only lists hypernetworks saved as .pt.")
    save_webui_pt(hypernetwork_to_webui_dict(data), path)


def file_shorthash(path: str | os.PathLike) -> str:
    """The WebUI's Hypernetwork.shorthash(): the first 10 hex digits of the file's sha256."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:10]
