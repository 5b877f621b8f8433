"""The trainer: config, LR schedules, templates, buckets, loop, checkpoints, previews, loss log."""
