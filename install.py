"""WebUI install hook: add only the packages Embed Studio needs that the WebUI lacks.

Never touches torch, gradio or anything the WebUI pins; uses the WebUI's own launch.run_pip. The WebUI
runs this file as a script with its own folder on PYTHONPATH.
"""

from __future__ import annotations

import os
import re
import tempfile
from importlib import metadata

# import name -> pip requirement. The WebUI already ships torch, gradio, safetensors, pillow,
# requests and huggingface_hub; these are checked only so a stripped-down install still works.
REQUIREMENTS = {
    "safetensors": "safetensors",
    "PIL": "pillow",
    "requests": "requests",
    "huggingface_hub": "huggingface_hub",
}
ALWAYS_HELD = ("torch", "torchvision", "gradio")


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def held_versions(requirements_file: str) -> list[str]:
    """`name==installed version` for every package the WebUI pins (and torch/gradio) that is installed.

    Given to pip as constraints, so it picks versions of our packages that fit what is there instead of
    upgrading the WebUI's (a plain `pip install onnxruntime` pulls protobuf 7, which breaks open-clip-torch).
    """
    names = list(ALWAYS_HELD)
    try:
        with open(requirements_file, encoding="utf-8") as f:
            for line in f:
                match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line.split("#", 1)[0])
                if match:
                    names.append(match.group(1))
    except OSError:
        pass  # no requirements file: hold torch and gradio at least
    held = {}
    for name in names:
        try:
            held[name.lower()] = f"{name}=={metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return list(held.values())


def main() -> None:
    import launch
    from modules.launch_utils import script_path

    constraints = held_versions(os.path.join(script_path, "requirements_versions.txt"))
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write("\n".join(constraints) + "\n")
    hold = f'-c "{f.name}"'
    try:
        for module, requirement in REQUIREMENTS.items():
            if not launch.is_installed(module):
                launch.run_pip(f"install {requirement} {hold}", f"{requirement} for Embed Studio")
        # onnxruntime-gpu installs the same "onnxruntime" module; either one present is enough.
        if not launch.is_installed("onnxruntime"):
            package = "onnxruntime-gpu" if _cuda_available() else "onnxruntime"
            launch.run_pip(f"install {package} {hold}", f"{package} for Embed Studio's tagger")
    finally:
        os.unlink(f.name)


if __name__ == "__main__":
    main()
