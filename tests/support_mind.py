"""Writers for small MIND-format folders used by the tests (the tests make their own data)."""

from __future__ import annotations

from pathlib import Path

# Titles with double quotes, a non-ASCII character and an empty abstract, as real MIND has.
NEWS_ROWS = [
    ("N1", "sports", "football_nfl", 'Dolphins "stun" the Jets in Miami', "A late field goal.", "https://x/1", "[]", "[]"),
    ("N2", "finance", "markets", "Stocks rise as Fed holds rates", "", "https://x/2", '[{"Label": "Fed"}]', "[]"),
    ("N3", "health", "wellness", "Café owners share 5 healthy habits", "Small steps help.", "https://x/3", "[]", "[]"),
    ("N4", "weather", "weather_news", "Storm heads for Florida coast", "Residents prepare.", "https://x/4", "[]", "[]"),
    ("N5", "travel", "travelnews", "Here's Exactly When To Cook Every Dish", "Thanksgiving guide.", "https://x/5", "[]", "[]"),
]

TRAIN_BEHAVIORS = [
    ("1", "U1", "11/15/2019 8:55:22 AM", "N1 N2", "N3-1 N4-0 N5-0"),
    ("2", "U2", "11/15/2019 12:01:00 PM", "", "N1-0 N2-1"),
    ("3", "U1", "11/16/2019 1:00:00 PM", "N1 N2", "N4-1 N5-1 N3-0"),
]
DEV_BEHAVIORS = [
    ("1", "U1", "11/17/2019 9:00:00 AM", "N1 N2", "N3-0 N5-1"),
    ("2", "U3", "11/17/2019 10:30:00 PM", "N4", "N1-1 N2-0 N3-0"),
]
TEST_BEHAVIORS_UNLABELED = [
    ("1", "U2", "11/18/2019 9:00:00 AM", "N1", "N3 N4 N5"),
]


def write_tsv(path: Path, rows: list[tuple[str, ...]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join("\t".join(r) + "\n" for r in rows).encode("utf-8"))


def write_mind(
    root: Path,
    folder_names: dict[str, str] | None = None,
    with_test: bool = False,
    news_by_split: dict[str, list[tuple[str, ...]]] | None = None,
) -> Path:
    """A small MIND root; news.tsv of every split repeats the shared news (as MIND does)."""
    names = folder_names or {"train": "train", "dev": "dev", "test": "test"}
    behaviors = {"train": TRAIN_BEHAVIORS, "dev": DEV_BEHAVIORS}
    if with_test:
        behaviors["test"] = TEST_BEHAVIORS_UNLABELED
    for split, rows in behaviors.items():
        folder = root / names[split]
        news = (news_by_split or {}).get(split, NEWS_ROWS)
        write_tsv(folder / "news.tsv", news)
        write_tsv(folder / "behaviors.tsv", rows)
    return root
