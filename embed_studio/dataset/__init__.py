"""A dataset folder: images, caption sidecars, tag operations, preprocessing, aspect buckets."""
