"""The Train tab's TrainConfig fields as gradio components: labels, the guides' advice as info text, widgets."""

from __future__ import annotations

from typing import Any

import gradio as gr

from embed_studio.backends.base import PRECISIONS, PREVIEW_SAMPLERS
from embed_studio.backends.samplers import STANDALONE_SCHEDULERS
from embed_studio.tagger.registry import model_names
from embed_studio.train.config import CLIP_GRAD_MODES, LATENT_SAMPLING, LR_SCHEDULERS
from embed_studio.train.option_help import BEYOND, CHOICES
from embed_studio.ui.train_form import FIELD_TYPES, default

LR_INFO = (
    "The WebUI's syntax: one rate ('0.005'), or rate:until-step pairs ('0.0005:5000, 0.0001:10000'). Training "
    "stops where the schedule ends; end it with a bare rate to hold that rate up to Max steps. The guide's "
    "embedding default is 0.0005:5000, 0.0001:10000; hypernetworks need rates about 100× lower."
)

# name -> label, info and widget options. Fields without choices get a widget from their type.
SPECS: dict[str, dict[str, Any]] = {
    "lr": dict(label="Learning rate schedule", info=LR_INFO),
    "lr_scheduler": dict(
        label="LR scheduler",
        choices=list(LR_SCHEDULERS),
        info="steps: the schedule above. cosine: anneals from its first rate (options below).",
    ),  # fmt: skip
    "cosine_min_lr": dict(label="Cosine: lowest rate"),
    "cosine_cycle_steps": dict(label="Cosine: steps per cycle", info="0: one cycle over Max steps"),
    "cosine_warmup_steps": dict(label="Cosine: warmup steps per cycle"),
    "cosine_cycle_mult": dict(label="Cosine: cycle length multiplier per restart"),
    "cosine_gamma": dict(label="Cosine: peak multiplier per restart"),
    "batch_size": dict(label="Batch size", info="The guide: 1 (with gradient accumulation 5)."),
    "grad_accum": dict(
        label="Gradient accumulation",
        info="Batches per step: batch 2 × 5 = 10 images a step. Default 5, the guide's (the WebUI's is 1).",
    ),
    "max_steps": dict(
        label="Max steps",
        info="The guide: 5000, or try 7500. Interrupt any time; Train again on the same file to go on.",
    ),
    "repeats": dict(label="Repeats", info="Times each image appears per epoch."),
    "clip_grad_mode": dict(label="Gradient clipping", choices=list(CLIP_GRAD_MODES)),
    "clip_grad_value": dict(label="Clipping limit", info="A number or a schedule in the learning-rate syntax."),
    "clip_grad_norm_type": dict(label="Norm type for clipping by norm", info="2 = Euclidean."),
    "seed": dict(label="Seed", info="Same seed and settings: the same run, also when resumed."),
    "precision": dict(label="Precision", choices=["auto", *PRECISIONS], info="auto: bf16/fp16 on GPU, fp32 on CPU."),
    "half_weights": dict(label="Keep frozen weights in that precision (saves memory)"),
    "gradient_checkpointing": dict(label="Gradient checkpointing (less memory, slower)"),
    "template": dict(
        label="Prompt template",
        dropdown=True,
        allow_custom_value=True,
        info="The guide's choice for characters: '[filewords], [name]' (filewords_name.txt). A file path works too.",
    ),  # fmt: skip
    "templates_dir": dict(label="Extra templates folder", info="Its .txt files join the template list."),
    "caption_regex": dict(label="Filename regex", info="For images without a .txt: the words of the file name kept."),
    "caption_join": dict(label="Join filename words with"),
    "shuffle_tags": dict(label="Shuffle tags", info="The guide: shuffle tags by ','."),
    "keep_first_tags": dict(label="Keep first N tags in place", info="With shuffle, e.g. a character tag."),
    "tag_dropout": dict(label="Tag dropout", info="Chance of leaving out each tag per step (0 to 0.5)."),
    "latent_sampling": dict(label="Latent sampling", choices=list(LATENT_SAMPLING), info="The guide: deterministic."),
    "width": dict(label="Width", info="Training area width; previews default to it."),
    "height": dict(label="Height"),
    "variable_size": dict(
        label="Variable size (aspect buckets)",
        info="Each image keeps its shape at about width×height pixels instead of a square crop.",
    ),
    "bucket_step": dict(label="Bucket step", info="Bucket sides are multiples of this (64)."),
    "clip_skip": dict(
        label="CLIP skip",
        info="Train with the CLIP skip you prompt with, and never change it for a file (the guide).",
    ),
    "save_every": dict(label="Save a copy every N steps", info="The guide: 250 (points to restart from). 0: off."),
    "preview_every": dict(
        label="Preview every N steps", info="The guide: 250; early previews show a failing run early. 0: off."
    ),
    "preview_prompt": dict(label="Preview prompt", info="Empty: the last training prompt.", lines=2),
    "preview_negative_prompt": dict(label="Preview negative prompt", lines=2),
    "preview_steps": dict(label="Sampling steps"),
    "preview_cfg_scale": dict(label="CFG scale"),
    "preview_seed": dict(label="Preview seed", info="-1: a new seed each preview."),
    "preview_sampler": dict(label="Sampler", choices=list(PREVIEW_SAMPLERS), dropdown=True),
    "preview_scheduler": dict(
        label="Schedule type",
        choices=list(STANDALONE_SCHEDULERS),
        dropdown=True,
        info="Like txt2img's; Automatic = the sampler's own.",
    ),
    "preview_width": dict(label="Preview width", info="0: the training width."),
    "preview_height": dict(label="Preview height", info="0: the training height."),
    "preview_with_embedding": dict(label="Also save a PNG carrying the embedding (like the WebUI)"),
    "use_alpha_weight": dict(label="Use the PNG alpha channel as loss weight"),
    "escape_filewords": dict(label="Escape brackets in [filewords]", info="'tag_(series)' stays literal text."),
    "adam_beta1": dict(label="AdamW beta1"),
    "adam_beta2": dict(label="AdamW beta2"),
    "adam_eps": dict(label="AdamW eps"),
    "weight_decay": dict(label="Weight decay", info="-1: the WebUI's (0 for embeddings, 0.01 for hypernetworks)."),
    "name": dict(label="Name in prompts ([name])", placeholder="empty: the file's name"),
    "log_dir": dict(label="Log folder", info="Copies, previews, the loss log and the settings of the run."),
}

# The options beyond the WebUI's trainer: labels and help from the one place the CLI takes them from too.
for _name, (_label, _info) in BEYOND.items():
    SPECS[_name] = dict(label=_label, info=_info)
    if _name in CHOICES:
        SPECS[_name]["choices"] = list(CHOICES[_name])
SPECS["preview_prompts"]["lines"] = 4
SPECS["score_tagger"].update(choices=model_names(), dropdown=True, allow_custom_value=True)


def elem_id(name: str) -> str:
    return "es-train-" + name.replace("_", "-")


def make_field(name: str, value: Any = None, **overrides: Any) -> gr.components.Component:
    """The component for one TrainConfig field, holding its default (or `value`)."""
    spec = {**SPECS.get(name, {}), **overrides}
    label = spec.pop("label", name.replace("_", " ").capitalize())
    value = default(name) if value is None else value
    choices = spec.pop("choices", None)
    dropdown = spec.pop("dropdown", False)
    common = dict(label=label, value=value, elem_id=elem_id(name), **spec)
    kind = FIELD_TYPES[name]
    if choices is not None or dropdown:
        if dropdown:
            return gr.Dropdown(choices=choices or [], **common)
        return gr.Radio(choices=choices, **common)
    if kind is bool:
        return gr.Checkbox(**common)
    if kind is int:
        return gr.Number(precision=0, **common)
    if kind is float:
        return gr.Number(**common)
    lines = common.pop("lines", 1)
    return gr.Textbox(lines=lines, max_lines=lines * 4, **common)
