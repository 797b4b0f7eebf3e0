"""recsys: the GENRE recommender zoo, usable without the genre-local CLI."""
