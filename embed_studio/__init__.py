"""Embed Studio: fetch, tag, prune and train textual-inversion embeddings and hypernetworks."""

__version__ = "0.1.0"
