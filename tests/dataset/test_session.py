"""The per-user session behind the panel: filter, scope, pagination, dirty marker; 10k-image folders."""

from __future__ import annotations

import pytest

from embed_studio.dataset.session import FILTERED, PAGE_SIZE, TABLE_LIMIT, DatasetSession
from embed_studio.errors import DatasetError, UserInputError


def test_open_requires_a_folder_and_refuses_to_drop_unsaved_edits(dataset, tmp_path):
    s = DatasetSession()
    with pytest.raises(UserInputError):
        s.require()
    with pytest.raises(UserInputError):
        s.open("  ")
    s.open(dataset)
    assert 'data-es-dirty="0"' in s.dirty_html()
    s.require().delete_tags("solo")
    assert 'data-es-dirty="1"' in s.dirty_html() and 'data-es-unsaved="3"' in s.dirty_html()
    with pytest.raises(DatasetError, match="unsaved"):
        s.open(dataset)
    assert s.require().dirty  # still there
    s.open(dataset, discard=True)
    assert not s.dirty


def test_filter_scope_and_table(dataset):
    s = DatasetSession()
    s.open(dataset)
    s.set_filter(has="gloves")
    assert len(s.filtered()) == 2
    rows, total = s.table()
    assert rows[0][:2] == ["1girl", 2] and rows[0][2] == 100.0 and total == len(rows)
    s.edited(s.require().delete_tags("blue hair", s.scope(FILTERED)))
    assert s.require().count("blue hair") == 1
    s.edited(s.require().delete_tags("gloves", s.scope(FILTERED)))
    assert s.filtered() == []  # the filter follows the edit
    assert s.scope("All images") is None


def test_gallery_pages_and_selection(tmp_path, build):
    folder = build(tmp_path / "many", {f"img {i:03d}.png": f"t{i % 7}, common" for i in range(PAGE_SIZE * 2 + 5)})
    s = DatasetSession()
    s.open(folder)
    assert s.page_count == 3
    first = s.gallery()
    assert len(first) == PAGE_SIZE and first[0][1] == "img 000.png"
    assert s.turn(5) == 2 and len(s.page_indices()) == 5
    assert s.turn(-10) == 0
    s.turn(1)
    assert s.select_on_page(0) == PAGE_SIZE
    with pytest.raises(UserInputError):
        s.select_on_page(PAGE_SIZE + 1)


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory):
    """10,000 tiny images with 20-tag captions, written as fast as the disk allows."""
    import io

    from PIL import Image

    folder = tmp_path_factory.mktemp("big")
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG")
    data = buf.getvalue()
    for i in range(10_000):
        (folder / f"{i:05d}.png").write_bytes(data)
        tags = ["1girl", "blue hair", "solo"] + [f"tag{(i * 7 + k) % 500}" for k in range(17)]
        (folder / f"{i:05d}.txt").write_text(", ".join(tags), encoding="utf-8")
    return folder


def test_ten_thousand_images_stay_bounded(big_folder):
    """Listing and a delete-everywhere on 10k images: correct, and what reaches the browser stays small."""
    s = DatasetSession()
    ds = s.open(big_folder)
    assert len(ds) == 10_000 and ds.count("blue hair") == 10_000
    rows, total = s.table()
    assert total == 503 and len(rows) <= TABLE_LIMIT
    assert len(s.gallery()) == PAGE_SIZE  # only one page of thumbnails is ever made
    edit = ds.delete_tags("blue hair")
    assert edit.image_count == 10_000 and ds.count("blue hair") == 0 and len(ds.unsaved()) == 10_000
    s.set_filter(has="tag3")
    assert all("tag3" in ds.tags_of(i) for i in s.filtered()) and len(s.filtered()) == 340
    ds.undo()
    assert ds.count("blue hair") == 10_000 and not ds.dirty
