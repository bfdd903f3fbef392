"""Model sources: tiers, configured models, result folders, HF folders and GGUF files."""
