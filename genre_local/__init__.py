"""genre-local: offline LLM-powered generative news recommendation (GENRE)."""

__version__ = "0.1.0"
