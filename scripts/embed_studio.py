# The WebUI runs each top-level file in scripts/; this one only registers Embed Studio's callbacks.
from embed_studio.webui.callbacks import register

register()
