"""The .pt layout we write passes WebUI v1.10.1's restricted unpickler and still loads in torch."""

from __future__ import annotations

import collections
import struct
import zipfile

import pytest
import torch

from embed_studio.errors import FileFormatError
from embed_studio.formats.torchfile import check_webui_safe_pt, save_webui_pt, webui_safe_pt_problem


def _sample() -> dict:
    sd = collections.OrderedDict([("linear.0.weight", torch.randn(8, 4)), ("linear.0.bias", torch.zeros(8))])
    sd._metadata = collections.OrderedDict([("", {"version": 1})])
    return {
        16: (sd, sd),
        "vec": torch.randn(3, 5, requires_grad=True),
        "half": torch.ones(2, dtype=torch.float16),
        "ids": torch.arange(4),
        "param": torch.nn.Parameter(torch.ones(2)),
        "name": "x",
        "none": None,
        "nested": {"a": [1, 2.5, True], "t": (1, 2)},
    }


def test_written_file_passes_webui_check_and_loads(tmp_path, webui_check):
    path = tmp_path / "sample.pt"
    obj = _sample()
    save_webui_pt(obj, path)

    ok, reason = webui_check(path)
    assert ok, reason
    assert webui_safe_pt_problem(path) is None
    names = zipfile.ZipFile(path).namelist()
    assert not any(n.endswith((".format_version", ".storage_alignment")) for n in names)
    assert names[0] == "sample/data.pkl"

    back = torch.load(path, weights_only=True)
    assert torch.equal(back["vec"], obj["vec"]) and back["vec"].requires_grad
    assert back["half"].dtype == torch.float16 and torch.equal(back["ids"], obj["ids"])
    assert isinstance(back["param"], torch.nn.Parameter)
    assert back["nested"] == obj["nested"] and back["none"] is None
    assert list(back[16][0]) == ["linear.0.weight", "linear.0.bias"]
    assert back[16][0]._metadata == {"": {"version": 1}}
    # memory-mapped loading relies on the tensor records staying aligned
    mapped = torch.load(path, weights_only=True, mmap=True)
    assert torch.equal(mapped[16][1]["linear.0.weight"], obj[16][1]["linear.0.weight"])


def test_tensor_records_are_64_byte_aligned(tmp_path):
    path = tmp_path / "a.pt"
    save_webui_pt({"a": torch.randn(7), "b": torch.randn(13), "c": torch.randn(3, 3)}, path)
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as z:
        infos = [i for i in z.infolist() if "/data/" in i.filename]
    assert len(infos) == 3
    for info in infos:
        name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
        assert (info.header_offset + 30 + name_len + extra_len) % 64 == 0


def test_plain_torch_save_is_rejected_by_the_webui_rule(tmp_path, webui_check):
    # Current torch writes .format_version/.storage_alignment: the reason files must be rewritten at all.
    path = tmp_path / "plain.pt"
    torch.save({"x": torch.ones(2)}, path)
    ok, reason = webui_check(path)
    assert not ok and "format_version" in reason
    assert "format_version" in webui_safe_pt_problem(path)
    with pytest.raises(FileFormatError, match="plain.pt"):
        check_webui_safe_pt(path)


class Custom:
    pass


def test_forbidden_class_is_rejected(tmp_path, webui_check):
    # A class outside the allow-list, inside an otherwise acceptable zip layout.
    path = tmp_path / "custom.pt"
    raw = tmp_path / "raw.pt"
    torch.save({"obj": Custom()}, raw)
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith((".format_version", ".storage_alignment")):
                dst.writestr(info.filename, src.read(info))
    ok, reason = webui_check(path)
    assert not ok and "forbidden" in reason
    assert "forbidden" in webui_safe_pt_problem(path)
    assert "forbidden" in webui_safe_pt_problem(path, execute=False)
    with pytest.raises(FileFormatError, match="never.pt: refusing"):
        save_webui_pt({"obj": Custom()}, tmp_path / "never.pt")
    assert not (tmp_path / "never.pt").exists()


def test_webui_fixture_rewritten_by_us_is_accepted(webui_files, tmp_path, webui_check):
    src = webui_files / "webui-made-hn.pt"
    assert not webui_check(src)[0]
    obj = torch.load(src, weights_only=True)
    out = tmp_path / "rewritten.pt"
    save_webui_pt(obj, out)
    assert webui_check(out)[0]
    again = torch.load(out, weights_only=True)
    assert torch.equal(again[64][1]["linear.3.weight"], obj[64][1]["linear.3.weight"])
