"""Aspect-ratio buckets: area fits, multiples of the step, aspect kept, and the crop is only rounding."""

import pytest
from PIL import Image

from embed_studio.dataset.buckets import (
    assign_buckets,
    bucket_size,
    bucket_sizes,
    fit_to_bucket,
    validate_bucket_settings,
)
from embed_studio.errors import UserInputError


@pytest.mark.parametrize("size", [(512, 512), (1000, 500), (500, 1000), (640, 480), (1920, 1080), (77, 913)])
def test_bucket_fits_area_and_step(size):
    w, h = bucket_size(*size)
    assert w % 64 == 0 and h % 64 == 0
    assert w * h <= 512 * 512
    assert w * h >= 512 * 512 * 0.75  # buckets use most of the area


def test_bucket_keeps_aspect_ratio():
    assert bucket_size(512, 512) == (512, 512)
    assert bucket_size(2048, 2048) == (512, 512)  # large images scale down to the area
    w, h = bucket_size(1920, 1080)
    assert abs(w / h - 16 / 9) < 0.2
    assert bucket_size(1080, 1920) == (h, w)  # portrait mirrors landscape


def test_buckets_list_both_orientations():
    sizes = bucket_sizes(64 * 64, 32)
    assert (96, 32) in sizes and (32, 96) in sizes and (64, 64) in sizes
    assert all(w * h <= 64 * 64 for w, h in sizes)


def test_assign_buckets_groups_by_size():
    groups = assign_buckets({"a": (64, 64), "b": (96, 48), "c": (80, 80), "d": (48, 96)}, 64 * 64, 32)
    assert groups == {(32, 96): ["d"], (64, 64): ["a", "c"], (96, 32): ["b"]}


def test_fit_to_bucket_only_crops_the_rounding():
    img = Image.new("RGB", (1000, 500))
    out = fit_to_bucket(img, bucket_size(1000, 500))
    assert out.size == bucket_size(1000, 500)


def test_invalid_settings_are_refused():
    with pytest.raises(UserInputError, match="multiple of 64"):
        validate_bucket_settings(500, 512, 64)
    with pytest.raises(UserInputError, match="multiple of 8"):
        validate_bucket_settings(512, 512, 60)


def test_extreme_aspect_still_fits():
    w, h = bucket_size(3000, 300)
    assert w * h <= 512 * 512 and h == 128 and w / h > 8


def test_image_buckets_read_headers_and_exif_rotation(tmp_path):
    from embed_studio.dataset.buckets import image_buckets

    Image.new("RGB", (1000, 500)).save(tmp_path / "wide.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated to portrait
    Image.new("RGB", (1000, 500)).save(tmp_path / "rotated.jpg", exif=exif)
    (tmp_path / "broken.png").write_bytes(b"nope")
    groups = image_buckets(sorted(tmp_path.iterdir()))
    assert groups[bucket_size(1000, 500)] == [tmp_path / "wide.png"]
    assert groups[bucket_size(500, 1000)] == [tmp_path / "rotated.jpg"]
    assert sum(len(v) for v in groups.values()) == 2
