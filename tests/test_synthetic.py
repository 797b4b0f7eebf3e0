"""recsys/synthetic.py: an in-memory EncodedDataset with the encoder's conventions."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.synthetic import CLS_ID, SEP_ID, SyntheticSizes, synthetic_dataset, synthetic_texts


def test_arrays_follow_the_encoders_conventions():
    sizes = SyntheticSizes(news=80, users=30, categories=4, title_len=8, history=6, candidates=5)
    data = synthetic_dataset(sizes, seed=3)
    assert len(data.news) == 81 and data.news.title[0].sum() == 0  # row 0 = padding news
    assert (data.news.title[1:, 0] == CLS_ID).all() and (data.news.title[1:, -1] == SEP_ID).all()
    assert data.news.title_mask.equal(data.news.title != 0)
    assert set(data.news.category[1:].tolist()) == {1, 2, 3, 4} and data.num_categories == 5
    assert data.word_ids.size > 0 and 0 not in data.word_ids
    assert set(data.splits) == {"train", "dev", "test"}
    ids = np.concatenate([s.impression_id for s in data.splits.values()])
    assert len(np.unique(ids)) == len(ids)  # impression ids unique across splits
    for split in data.splits.values():
        assert split.labeled and split.history_offsets[-1] == len(split.history)
        assert split.candidate_offsets[-1] == len(split.candidates) == len(split.labels)
        assert split.history.min() >= 1 and split.candidates.max() <= sizes.news
        assert 1 <= split.user_index.min() and split.user_index.max() < data.num_users
        for row in range(len(split)):
            clicked = split.impression_candidates(row)[split.impression_labels(row) == 1]
            assert 1 <= len(clicked) <= 2
            assert len(set(split.impression_candidates(row).tolist())) == sizes.candidates  # distinct
            history = split.history[split.history_offsets[row]:split.history_offsets[row + 1]]
            # Every click is of the category the user's history is of: the learnable signal.
            assert set(data.news.category[clicked].tolist()) == set(data.news.category[history].tolist())
    assert len(data.split("train")) == 4 * 30
    assert data.split("test").is_new_user().any() and not data.split("test").is_new_user().all()


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = (synthetic_dataset(SyntheticSizes(news=64, users=16), seed=s) for s in (1, 1, 2))
    assert a.news.title.equal(b.news.title) and np.array_equal(a.split("dev").candidates, b.split("dev").candidates)
    assert not a.news.title.equal(c.news.title)


@pytest.mark.parametrize("bad", [dict(news=10, categories=8), dict(users=0), dict(title_len=2), dict(candidates=2),
                                 dict(news=8, categories=4, candidates=8)])
def test_too_small_sizes_are_refused(bad):
    with pytest.raises(ValueError, match="too small"):
        SyntheticSizes(**bad)


def test_texts_spell_out_the_title_ids_and_categories():
    """DIRE reads strings: each title word id and each category as its own word, row-aligned."""
    data = synthetic_dataset(SyntheticSizes(news=64, users=16), seed=3)
    texts = synthetic_texts(data.news)
    assert len(texts) == len(data.news.category) == 65
    assert texts.row(0) == {"title": "", "abstract": "", "category": "", "subcategory": ""}
    for row in (1, 40):
        ids = [int(i) for i in data.news.title[row] if int(i) not in (0, CLS_ID, SEP_ID)]
        assert texts.row(row)["title"] == " ".join(f"w{i}" for i in ids)
        assert texts.row(row)["category"] == f"w{900 + int(data.news.category[row])}"
    categories = {texts.row(r)["category"] for r in range(1, 65)}
    assert len(categories) == 8 and not categories & set(texts.row(1)["title"].split())
