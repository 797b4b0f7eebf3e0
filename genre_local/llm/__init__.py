"""The LLM side of GENRE: model registry and preparation, backends, task definitions."""
