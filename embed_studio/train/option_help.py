"""Labels and help for the training options beyond the WebUI's trainer, shared by the CLI flags and the Train tab."""

from __future__ import annotations

from embed_studio.train.config import ON_VALIDATION_RISE
from embed_studio.train.optimizers import OPTIMIZERS

# field -> (label, what it does and its allowed values). Every default leaves a run as it was without the option.
BEYOND: dict[str, tuple[str, str]] = {
    "caption_dropout": (
        "Caption dropout",
        "Chance (0 to below 1) that a prompt leaves out the whole caption ([filewords]), so the name alone must "
        "carry the subject. 0 = off; kohya users take 0.05-0.1.",
    ),
    "token_warmup_min": (
        "Token warmup: tags at the start",
        "With token warmup: how many caption tags (after the kept ones, in caption order) prompts use at step 0.",
    ),
    "token_warmup_step": (
        "Token warmup: steps",
        "kohya's token warmup: the tags used grow from the start count to the whole caption over this many steps. "
        "0 = off.",
    ),
    "flip_augment": (
        "Flip images horizontally",
        "Each step shows every image mirrored or not at random (mirrors are encoded once, doubling the cache). "
        "Leave off for asymmetric characters (a scar on one side).",
    ),
    "color_jitter": (
        "Colour jitter",
        "Brightness, contrast and saturation each varied by up to ± this share (0 to below 1, e.g. 0.1); hue is "
        "kept. Images are then encoded every step (slower). 0 = off.",
    ),
    "loss_mask_dir": (
        "Loss mask folder",
        "A folder of masks named like the images (any image type; white = learn, black = ignore, grey between), "
        "used as loss weights; a relative path is inside the dataset folder (e.g. 'masks'). Images without a mask "
        "count everywhere. Empty = off.",
    ),
    "noise_offset": (
        "Noise offset",
        "kohya's noise offset (0 to below 1; about 0.05-0.1) helps learn very dark or bright images. 0 = off.",
    ),
    "min_snr_gamma": (
        "Min-SNR gamma",
        "Min-SNR loss weighting: easy, low-noise timesteps count less (5 is the paper's value). On v-prediction "
        "models it uses the v form (divides by SNR + 1). 0 = off.",
    ),
    "debiased_loss": (
        "Debiased loss (1/√SNR)",
        "Weights each timestep by 1/sqrt(SNR) (kohya's debiased estimation).",
    ),
    "v_pred_like_eps_loss": (
        "v-prediction: scale loss like epsilon",
        "On v-prediction models (SD 2.x 768) scales the loss by SNR/(SNR + 1), the weighting an epsilon model's "
        "loss has (kohya's scale_v_pred_loss_like_noise_pred). Epsilon models ignore it.",
    ),
    "min_timestep": (
        "Lowest timestep",
        "Train only on timesteps from this one (0-999) up to the highest; the full range is 0-1000.",
    ),
    "max_timestep": (
        "Highest timestep (exclusive)",
        "Train only on timesteps below this one (1-1000, above the lowest). 1000 = all.",
    ),
    "optimizer": (
        "Optimizer",
        f"One of {', '.join(OPTIMIZERS)}. Lion (pip install lion-pytorch), Prodigy (prodigyopt) and D-Adaptation "
        "Adam (dadaptation) need their package installed; Prodigy and D-Adaptation want a learning rate of about 1. "
        "The AdamW betas/eps/weight decay apply to all. Resuming with another optimizer starts its state fresh.",
    ),
    "save_safetensors": (
        "Also save .safetensors",
        "Embeddings: a .safetensors of the file in the log folder and beside every saved step copy (hypernetworks "
        "are .pt only in the WebUI).",
    ),
    "save_each_cycle": (
        "Save and preview at each cosine cycle end",
        "With the cosine scheduler and restarts: a saved copy and previews at the end of every cycle, where the "
        "rate is lowest (Train_Gamma).",
    ),
    "tensorboard": (
        "TensorBoard scalars",
        "Also write the loss, learning rate, trained-parameter norm and validation loss to LOGDIR/tensorboard "
        "(needs the tensorboard package: pip install tensorboard).",
    ),
    "preview_prompts": (
        "More preview prompts",
        "One prompt a line, each rendered at every preview and shown with the usual preview in one grid per step. "
        'A line may set its own options like the WebUI\'s prompts-from-file script: --prompt "..." --seed 5 '
        '--sampler_name euler --steps 25 --cfg_scale 6 --width 512 --height 768 --negative_prompt "...".',
    ),
    "validation_split": (
        "Validation share",
        "Share of the images (0 to below 1, e.g. 0.1) held back from training; their loss on fixed noise and "
        "timesteps is checked and plotted. 0 = no validation (unless a folder is given).",
    ),
    "validation_dir": (
        "Validation folder",
        "Or a folder of validation images with captions (instead of a share). Empty = none.",
    ),
    "validation_every": ("Validate every N steps", "Steps between validation checks (at least 1)."),
    "validation_patience": (
        "Act after N rises",
        "When the validation loss rose this many checks in a row, do what 'On validation rise' says. 0 = never.",
    ),
    "on_validation_rise": (
        "On validation rise",
        f"{' / '.join(ON_VALIDATION_RISE)}: nothing, multiply the learning rate by the validation LR factor, or roll back "
        "to the best state (the best copy, NAME-best.pt in the log folder, is kept either way).",
    ),
    "validation_lr_factor": ("Validation LR factor", "What lower_lr multiplies the rate by (between 0 and 1)."),
    "preview_score": (
        "Score previews with the tagger",
        "Tag every preview with the tagger below and log, per saved step, how many of the character tags it shows "
        "(preview_scores.jsonl beside loss.csv, drawn under the loss with the best step named). Needs previews and "
        "a tagger model; without one training runs unscored.",
    ),
    "score_tagger": (
        "Scoring tagger model",
        "The Tagger panel's model: a registry name (downloaded once, like in the Tagger panel) or a folder holding "
        "model.onnx and selected_tags.csv. Empty = no scoring.",
    ),
    "score_tags": (
        "Character tags to look for",
        "Comma-separated tags the previews should show. Empty = the Dataset panel's suggestions: tags on at least "
        "the share below of the images, generic ones (solo, 1girl...) left out.",
    ),
    "score_share": (
        "Suggested tags: share of images",
        "With no tags listed: a tag counts as the character's when at least this share (above 0, at most 1) of the "
        "dataset's captions have it (the Dataset panel's Suggest threshold).",
    ),
    "score_models_dir": (
        "Tagger models folder",
        "Where registry taggers are downloaded and cached. Empty = the Tagger panel's folder.",
    ),
    "compile_unet": (
        "Compile the U-Net (torch.compile)",
        "Experimental, standalone backend: faster steps on a GPU once compiled. The first step of each bucket "
        "shape compiles (a minute or more); needs a C compiler (and Triton on a GPU). Compare its loss curve with "
        "an uncompiled run's. The WebUI's model is left as it is.",
    ),
}

CHOICES: dict[str, tuple[str, ...]] = {"optimizer": OPTIMIZERS, "on_validation_rise": ON_VALIDATION_RISE}

# How the Train tab groups them (each tuple a row).
GROUPS: dict[str, list[tuple[str, ...]]] = {
    "Captions and augmentation": [
        ("caption_dropout", "token_warmup_min", "token_warmup_step"),
        ("flip_augment", "color_jitter", "loss_mask_dir"),
    ],
    "Loss and optimizer": [
        ("noise_offset", "min_snr_gamma", "min_timestep", "max_timestep"),
        ("debiased_loss", "v_pred_like_eps_loss", "optimizer"),
        ("save_safetensors", "save_each_cycle", "tensorboard"),
    ],
    "More previews": [("preview_prompts",)],
    "Speed": [("compile_unet",)],
    "Validation": [
        ("validation_split", "validation_dir", "validation_every"),
        ("validation_patience", "on_validation_rise", "validation_lr_factor"),
    ],
    "Preview scoring": [("preview_score", "score_tagger", "score_models_dir"), ("score_tags", "score_share")],
}
