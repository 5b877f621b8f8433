"""The training set: buckets from real VAE latents, unreadable images skipped, and the seeded batch plan."""

from collections import Counter

import pytest

from embed_studio.errors import DatasetError
from embed_studio.train.data import BatchPlan, prepare_training_set


def _prepare(backend, folder, **kw):
    options = dict(width=64, height=64, variable_size=True, bucket_step=32, latent_sampling="deterministic", seed=0)
    options.update(kw)
    return prepare_training_set(backend, folder, **options)


def test_buckets_hold_latents_of_their_size(backend, dataset):
    data = _prepare(backend, dataset)
    sizes = {b.size: len(b.paths) for b in data.buckets}
    assert sizes == {(32, 96): 1, (64, 64): 3, (96, 32): 2}
    for b in data.buckets:
        assert tuple(b.mean.shape) == (len(b.paths), 4, b.size[1] // 8, b.size[0] // 8)
        assert b.std is None
    assert len(data) == 6 and "1girl, solo, black hair, red eyes" in data.captions()
    fixed = _prepare(backend, dataset, variable_size=False, latent_sampling="random")
    assert [(b.size, len(b.paths)) for b in fixed.buckets] == [((64, 64), 6)]
    assert fixed.buckets[0].std is not None


def test_unreadable_images_are_skipped_and_empty_folders_refused(backend, dataset, tmp_path):
    (dataset / "broken.png").write_bytes(b"not an image")
    data = _prepare(backend, dataset)
    assert len(data) == 6 and any("broken.png" in s for s in data.skipped)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no images"):
        _prepare(backend, empty)


def test_batch_plan_covers_each_epoch_from_single_buckets(backend, dataset):
    data = _prepare(backend, dataset)
    plan = BatchPlan(data, batch_size=2, repeats=2, seed=5)
    # buckets of 1, 3 and 2 images, twice each: ceil(2/2) + ceil(6/2) + ceil(4/2) batches
    assert plan.batches_per_epoch == 1 + 3 + 2
    seen = Counter()
    for position in range(plan.batches_per_epoch):
        bucket, indices = plan.batch(position)
        assert len(indices) == 2 and all(i < len(data.buckets[bucket].paths) for i in indices)
        seen.update((bucket, i) for i in indices)
    assert all(seen[(b, i)] >= 2 for b, bucket in enumerate(data.buckets) for i in range(len(bucket.paths)))
    again = BatchPlan(data, batch_size=2, repeats=2, seed=5)
    assert [again.batch(p) for p in (7, 3, 0)] == [plan.batch(p) for p in (7, 3, 0)]
    other = BatchPlan(data, batch_size=2, repeats=2, seed=6)
    assert [other.batch(p) for p in range(12)] != [plan.batch(p) for p in range(12)]
