"""Gradio Blocks builders, one module per tab; the same code runs in the WebUI and standalone."""
