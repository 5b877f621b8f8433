"""WebUI glue: callbacks, settings, API routes, progress through shared.state."""
