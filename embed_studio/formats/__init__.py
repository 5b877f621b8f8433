"""WebUI file formats: embeddings (.pt, .safetensors, PNG-embedded), hypernetworks (.pt)."""
