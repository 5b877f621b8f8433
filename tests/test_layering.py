"""DESIGN.md's import rules: the WebUI's modules and gradio stay in their layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "embed_studio"


def imported_top_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def library_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", library_files(), ids=rel)
def test_webui_modules_only_in_glue(path):
    allowed = rel(path).startswith("embed_studio/webui/") or rel(path) == "embed_studio/backends/webui.py"
    if not allowed:
        assert not {"modules", "launch"} & imported_top_modules(path), f"{rel(path)} imports the WebUI"


@pytest.mark.parametrize("path", library_files(), ids=rel)
def test_gradio_only_in_ui_and_glue(path):
    if not rel(path).startswith(("embed_studio/ui/", "embed_studio/webui/")):
        assert "gradio" not in imported_top_modules(path), f"{rel(path)} imports gradio"


def test_ui_does_not_import_webui():
    for path in (PACKAGE / "ui").rglob("*.py"):
        assert "modules" not in imported_top_modules(path), f"{rel(path)} imports the WebUI; ui/ is host-agnostic"


def test_scripts_folder_is_one_thin_entry_point():
    scripts = sorted(p.name for p in (ROOT / "scripts").iterdir() if p.suffix == ".py")
    assert scripts == ["embed_studio.py"]


def test_detector_sees_imports(tmp_path):
    # Guard the guard: the scanner must notice both import forms.
    f = tmp_path / "x.py"
    f.write_text("import modules.shared\nfrom gradio import Blocks\n")
    assert imported_top_modules(f) == {"modules", "gradio"}
