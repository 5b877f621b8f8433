#!/usr/bin/env bash
# Install the tiny open_clip architecture "EmbedStudioTinyXL" (used by tiny-sdxl.yaml's
# FrozenOpenCLIPEmbedder arch) into the WebUI venv's open_clip package. Local test setup only.
# open_clip scans model_configs/*.json at import time, so run this before starting the WebUI.
set -euo pipefail
PY=${SD_WEBUI_PYTHON:?set SD_WEBUI_PYTHON to the WebUI venv python}
HERE=$(cd "$(dirname "$0")" && pwd)
DEST=$("$PY" -c 'import open_clip, os; print(os.path.join(os.path.dirname(open_clip.__file__), "model_configs"))' 2>/dev/null)
[ -d "$DEST" ] || { echo "open_clip model_configs not found: $DEST" >&2; exit 1; }
install -m 644 "$HERE/EmbedStudioTinyXL.json" "$DEST/EmbedStudioTinyXL.json"
echo "installed $DEST/EmbedStudioTinyXL.json"
"$PY" -c 'import open_clip; assert "EmbedStudioTinyXL" in open_clip.list_models(); print("open_clip sees EmbedStudioTinyXL")' 2>/dev/null
