"""Datasets: MIND import, the synthetic MIND generator, statistics, and the GENRE taxonomy."""
