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


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def glue_imports(path: Path) -> set[str]:
    """embed_studio.webui.* modules `path` imports, at the top or inside a function (both can close a circle)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith("embed_studio.webui")
        ):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("embed_studio.webui"))
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_webui_glue_modules_import_no_circle():
    # A circle between glue modules works only while every import in it stays inside a function.
    files = sorted((PACKAGE / "webui").glob("*.py"))
    names = {module_name(p) for p in files}
    graph = {module_name(p): {m for m in glue_imports(p) if m in names} - {module_name(p)} for p in files}
    assert import_cycles(graph) == []


def test_cycle_finder_finds_a_circle():
    assert import_cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b", "a"]]
