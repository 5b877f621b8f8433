"""WebUI install hook: add only the packages Embed Studio needs that the WebUI lacks.

Never touches torch, gradio or anything the WebUI pins; uses the WebUI's own launch.run_pip.
"""

import launch

# import name -> pip requirement. The WebUI already ships torch, gradio, safetensors, pillow,
# requests and huggingface_hub; these are checked only so a stripped-down install still works.
REQUIREMENTS = {
    "safetensors": "safetensors",
    "PIL": "pillow",
    "requests": "requests",
    "huggingface_hub": "huggingface_hub",
}


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def main() -> None:
    for module, requirement in REQUIREMENTS.items():
        if not launch.is_installed(module):
            launch.run_pip(f"install {requirement}", f"{requirement} for Embed Studio")
    # onnxruntime-gpu installs the same "onnxruntime" module; either one present is enough.
    if not launch.is_installed("onnxruntime"):
        package = "onnxruntime-gpu" if _cuda_available() else "onnxruntime"
        launch.run_pip(f"install {package}", f"{package} for Embed Studio's tagger")


main()
