"""PLMNR on cached layers: the frozen MiniLM layers run once per catalogue, the top one with LoRA."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genre_local.store import open_store
from genre_local.store.variants import fetch_encoded
from recsys.inputs import NewsInputs
from recsys.metrics import impression_metrics
from recsys.models import ModelConfig, build_model
from recsys.train import RunSettings, make_accelerator, run_training
from recsys.variants import parse_variant
from tests.support_models import ALL_FEATURES, SIZES, click_task, forward, make_news, rows, tiny_config
from tests.support_train import make_store, one_thread


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def plmnr():
    torch.manual_seed(0)
    return build_model("plmnr", tiny_config(transformer_layers=3, features=ALL_FEATURES), SIZES)


def catalogue(count: int = 17, seed: int = 0) -> NewsInputs:
    generator = torch.Generator().manual_seed(seed)
    return make_news(torch.randint(1, SIZES.num_categories, (count,), generator=generator), generator)


def test_select_records_the_catalogue_rows() -> None:
    news = catalogue()
    first = news.select(torch.tensor([[5, 2], [9, 9]]))
    assert first.index.tolist() == [5, 2, 9, 9]
    again = first.select(torch.tensor([3, 0]))
    assert again.index.tolist() == [9, 5]
    assert torch.equal(again.title, news.title[[9, 5]])


def test_cached_layers_give_the_direct_vectors(plmnr, tmp_path) -> None:
    news = catalogue()
    plmnr.eval()
    with torch.no_grad():
        direct = plmnr.encode_news(news)  # a whole catalogue without rows: no cache involved
        plmnr.prepare_news(news, tmp_path)
        cached = plmnr.encode_news(news.select(torch.arange(len(news))))
        some = plmnr.encode_news(news.select(torch.tensor([16, 3, 3])))
    assert plmnr.news_encoder.split.lower_layers == 2  # 3 layers kept, the top one tuned
    assert torch.allclose(direct, cached, atol=2e-3), (direct - cached).abs().max()
    assert torch.allclose(some, cached[[16, 3, 3]], atol=1e-5)
    manifest = next(tmp_path.glob("plmnr-minilm-*/manifest.json"))
    assert '"layer": 2' in manifest.read_text()


def test_with_the_cache_the_frozen_layers_never_run(plmnr, monkeypatch) -> None:
    news = catalogue()
    plmnr.prepare_news(news, None)
    split = plmnr.news_encoder.split

    def refuse(ids, mask):
        raise AssertionError("the frozen layers ran although cached")

    monkeypatch.setattr(split, "lower", refuse)
    plmnr.train()
    loss = plmnr.encode_news(news.select(torch.tensor([1, 4, 4, 7]))).sum()
    loss.backward()
    trainable = [n for n, p in plmnr.named_parameters() if p.requires_grad]
    assert all(p.grad is not None for n, p in plmnr.named_parameters() if p.requires_grad and "lora_A" in n)
    assert not any("embeddings" in n or "encoder.layer" in n for n in plmnr.state_dict())
    assert trainable and not any("base_layer" in n for n in trainable)
    plmnr.zero_grad(set_to_none=True)


def test_category_and_image_are_tokens_of_the_sequence(plmnr) -> None:
    news = catalogue()
    plmnr.eval()
    with torch.no_grad():
        base = plmnr.encode_news(news)
        other = replace(news, category=news.category % (SIZES.num_categories - 1) + 1)
        assert not torch.allclose(plmnr.encode_news(other), base)
        no_image = replace(news, image_present=torch.zeros(len(news), dtype=torch.bool))
        shuffled = replace(no_image, image=torch.randn_like(news.image))
        assert torch.allclose(plmnr.encode_news(no_image), plmnr.encode_news(shuffled), atol=1e-6)


def test_learns_the_click_task_from_the_cache() -> None:
    torch.manual_seed(0)
    features = ("title", "category")
    train, test = click_task(240, 0, features), click_task(60, 100, features)
    model = build_model("plmnr", tiny_config(features=features, transformer_layers=2), SIZES)
    model.prepare_news(train.news, None)
    catalogue_rows = train.news.select(torch.arange(len(train.news)))
    optimizer = torch.optim.Adam((p for p in model.parameters() if p.requires_grad), lr=5e-3)
    for _ in range(2):
        model.train()
        order = torch.randperm(train.history.shape[0])
        for start in range(0, order.numel(), 32):
            index = order[start : start + 32]
            logits = forward(model, catalogue_rows, train.history[index], rows(train.users, index), train.candidates[index])
            loss = F.cross_entropy(logits, torch.zeros(index.numel(), dtype=torch.long))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        scores = forward(model, catalogue_rows, test.history, test.users, test.candidates).numpy()
    auc = impression_metrics(list(test.labels.numpy()), list(scores.astype(np.float64)))["auc"]
    assert auc > 0.7, f"PLMNR on cached layers: test AUC {auc:.3f}"


# "no-grad" differs from "exact" only in which rows encode_step_news differentiates (pinned by the
# unit tests below); "cached" and "states" also need the trainer's start_epoch call, so they run here.
@pytest.mark.parametrize("history", ["exact", pytest.param("cached", marks=pytest.mark.slow), "states"])
def test_trains_through_the_trainer_with_a_disk_cache(tmp_path, monkeypatch, history) -> None:
    from recsys.models.lm_news import LayerCachedNewsEncoder

    refreshes = []
    for name, kind in (("refresh_table", "cached"), ("refresh_state_table", "states")):
        def spy(self, *a, _kind=kind, _refresh=getattr(LayerCachedNewsEncoder, name), **k):
            refreshes.append((_kind, self.training))
            return _refresh(self, *a, **k)

        monkeypatch.setattr(LayerCachedNewsEncoder, name, spy)
    db = make_store(tmp_path / "s.duckdb", users=32, news_per_cat=10)
    with open_store(db) as store:
        data, _ = fetch_encoded(store.conn, "tiny", parse_variant("original"), ("title", "category"),
                                12, 8, None, tmp_path / "cache")
    settings = RunSettings(
        model="plmnr", seed=1, epochs=3, batch_size=32, eval_batch_size=64, lr=1e-2, weight_decay=0.01,
        negatives=4, patience=2, history_len=10, layer_cache_dir=tmp_path / "layers",
        model_config=ModelConfig(embed_dim=16, num_heads=2, transformer_layers=2, history_len=10,
                                 title_len=12, features=("title", "category"), plmnr_history=history),
    )
    result = run_training(make_accelerator(), data, settings)
    assert result.metrics["test"]["all"]["auc"] > 0.7, result.metrics["test"]["all"]
    assert len(list((tmp_path / "layers").glob("plmnr-minilm-*/title-*.bin"))) == 1
    # the history table is rebuilt at each epoch start, in training mode (refresh_table itself
    # switches to eval for the pass); the exact path never builds one
    assert refreshes == ([] if history == "exact" else [(history, True)] * len(result.epoch_seconds))
    # the state table's memory-mapped scratch is unlinked at once: nothing of it stays on disk
    assert not [f for f in (tmp_path / "layers").iterdir() if f.is_file()]


def _lora_grads(model) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and "lora_" in n and p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def test_no_grad_history_leaves_only_candidate_rows_with_gradient(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model("plmnr", tiny_config(transformer_layers=2, features=ALL_FEATURES, plmnr_history="no-grad"), SIZES)
    news = catalogue(count=23)
    model.prepare_news(news, tmp_path)
    batch = news.select(torch.arange(len(news)))
    candidates = torch.tensor([[4, 17], [17, 9], [0, 22]])
    model.eval()  # no dropout: the two paths must then give the same vectors and gradients
    exact = model.encode_news(batch)
    split = model.encode_step_news(batch, candidates)
    assert torch.allclose(exact, split, atol=1e-5), (exact - split).abs().max()
    grad_rows = [0, 4, 9, 17, 22]
    history_rows = [r for r in range(len(news)) if r not in grad_rows]
    assert split.requires_grad
    # a loss on candidate rows: the same LoRA gradients as the exact path
    exact[grad_rows].sum().backward()
    want = _lora_grads(model)
    model.encode_step_news(batch, candidates)[grad_rows].sum().backward()
    got = _lora_grads(model)
    assert want and want.keys() == got.keys()
    assert all(torch.allclose(want[n], got[n], atol=1e-5) for n in want)
    # a loss on history-only rows reaches no parameter of the news encoder
    model.encode_news(batch)[history_rows].sum().backward()
    assert any(g.abs().sum() > 0 for g in _lora_grads(model).values())  # the exact path does
    model.encode_step_news(batch, candidates)[history_rows].sum().backward()
    assert not any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.news_encoder.parameters())


def test_history_is_exact_by_default() -> None:
    torch.manual_seed(0)
    model = build_model("plmnr", tiny_config(transformer_layers=2), SIZES)
    assert model.config.plmnr_history == "exact"
    news = catalogue()
    model.eval()
    news.index = None  # not cached: one length group, the same computation as encode_news
    with torch.no_grad():
        assert torch.equal(model.encode_step_news(news, torch.tensor([[1]])), model.encode_news(news))
    model.prepare_news(news, None)
    rows = news.select(torch.arange(len(news)))
    model.encode_step_news(rows, torch.tensor([[1]]))[[0, 5]].sum().backward()  # history-only rows
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)


def test_cached_history_reads_the_table_of_the_last_refresh(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model("plmnr", tiny_config(transformer_layers=2, features=ALL_FEATURES, plmnr_history="cached"), SIZES)
    news = catalogue(count=23)
    model.prepare_news(news, tmp_path)
    batch = news.select(torch.tensor([3, 8, 12, 19, 20, 4]))
    candidates = torch.tensor([[0, 1], [1, 2]])  # catalogue rows 3, 8, 12; rows 19, 20, 4 history only
    model.train()
    model.start_epoch()
    assert model.training  # refresh_table restored the mode
    model.eval()  # no dropout: fresh and table vectors must then agree
    assert torch.allclose(model.encode_step_news(batch, candidates), model.encode_news(batch), atol=1e-5)
    # a loss on history-only rows trains the projection only: LoRA, pooling and tokens get nothing
    model.encode_step_news(batch, candidates)[3:].sum().backward()
    reached = {n for n, p in model.news_encoder.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert reached == {"project.weight", "project.bias"}
    model.zero_grad(set_to_none=True)
    # the weights move (a training step): history rows keep the refresh's vectors, candidates and
    # evaluation (encode_news) see the new weights; the next epoch start catches the table up
    before = model.encode_step_news(batch, candidates).detach()
    with torch.no_grad():
        for name, p in model.news_encoder.named_parameters():
            if "lora_B" in name or name.startswith("pool"):
                p.add_(0.05 * torch.randn_like(p))
    fresh, step = model.encode_news(batch), model.encode_step_news(batch, candidates)
    assert torch.allclose(step[3:], before[3:], atol=1e-6)
    assert torch.allclose(step[:3], fresh[:3], atol=1e-5) and not torch.allclose(fresh[3:], before[3:], atol=1e-3)
    model.start_epoch()
    assert torch.allclose(model.encode_step_news(batch, candidates), fresh, atol=1e-5)
    with pytest.raises(ValueError, match="NewsInputs.index"):
        model.news_encoder.table_rows(news, torch.tensor([0]))  # the catalogue itself: no rows to look up


def test_states_history_pools_the_token_states_of_the_last_refresh(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_model("plmnr", tiny_config(transformer_layers=2, features=ALL_FEATURES, plmnr_history="states"), SIZES)
    news = catalogue(count=23)
    news.category[5] = 0  # a news without category: one position fewer in its table row
    model.prepare_news(news, tmp_path)
    batch = news.select(torch.tensor([3, 8, 12, 19, 20, 4, 5]))
    candidates = torch.tensor([[0, 1], [1, 2]])  # catalogue rows 3, 8, 12; rows 19, 20, 4, 5 history only
    model.train()
    model.start_epoch()
    assert model.training  # refresh_state_table restored the mode
    model.eval()  # no dropout: fresh and table vectors must then agree (up to the 16-bit states)
    assert torch.allclose(model.encode_step_news(batch, candidates), model.encode_news(batch), atol=2e-3)
    # a loss on history-only rows trains pooling and projection, not LoRA nor the special tokens
    model.encode_step_news(batch, candidates)[3:].sum().backward()
    reached = {n for n, p in model.news_encoder.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert reached == {"project.weight", "project.bias", "pool.project.weight", "pool.project.bias", "pool.query"}
    model.zero_grad(set_to_none=True)
    # the weights move: history rows see the new pooling and projection on the refresh's token
    # states, so they differ from both the old vectors and fresh ones until the next refresh
    before = model.encode_step_news(batch, candidates).detach()
    with torch.no_grad():
        for name, p in model.news_encoder.named_parameters():
            if "lora_B" in name or name.startswith(("pool", "category")):
                p.add_(0.05 * torch.randn_like(p))
    fresh, step = model.encode_news(batch), model.encode_step_news(batch, candidates)
    assert torch.allclose(step[:3], fresh[:3], atol=1e-5)
    assert not torch.allclose(step[3:], before[3:], atol=1e-3) and not torch.allclose(step[3:], fresh[3:], atol=1e-3)
    model.start_epoch()
    assert torch.allclose(model.encode_step_news(batch, candidates), fresh, atol=2e-3)
    # with dropout (training mode) history rows are pooled through it: two draws differ
    model.train()
    assert not torch.equal(model.encode_step_news(batch, candidates)[3:], model.encode_step_news(batch, candidates)[3:])
    with pytest.raises(ValueError, match="NewsInputs.index"):
        model.news_encoder.state_rows(news, torch.tensor([0]))


@pytest.mark.parametrize("history", ["cached", "states"])
def test_a_table_rebuilt_from_saved_weights_is_the_one_built_then(tmp_path, history) -> None:
    """What the trainer keeps in a checkpoint (start_epoch's return) rebuilds the same table
    later, after the weights moved, and leaves the current weights as they are."""
    torch.manual_seed(0)
    model = build_model("plmnr", tiny_config(transformer_layers=2, features=ALL_FEATURES, plmnr_history=history), SIZES)
    news = catalogue(count=23)
    model.prepare_news(news, tmp_path)
    batch = news.select(torch.tensor([3, 8, 12, 19, 20, 4]))
    candidates = torch.tensor([[0, 1], [1, 2]])
    model.train()
    saved = model.start_epoch()
    assert saved and all(not t.requires_grad for t in saved.values())
    assert {n for n, p in model.news_encoder.named_parameters() if p.requires_grad} == saved.keys()
    model.eval()
    with torch.no_grad():
        then = model.encode_step_news(batch, candidates)
        for name, p in model.news_encoder.named_parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
        moved = {n: p.detach().clone() for n, p in model.news_encoder.named_parameters()}
        model.start_epoch()  # from the moved weights: another table
        assert not torch.allclose(model.news_encoder.forward_grad_rows(batch, candidates, None)[3:],
                                  then[3:], atol=1e-3)
        again = model.start_epoch(saved)
        assert all(torch.equal(p, moved[n]) for n, p in model.news_encoder.named_parameters())  # put back
        assert all(torch.equal(again[n], saved[n]) for n in saved)
        # history rows read the old table through the current (moved) head: compare the pooled rows
        if history == "cached":
            assert torch.equal(model.news_encoder._table, _table_of(model, saved))
        else:
            rows = torch.arange(len(news))
            states, _ = model.news_encoder._states.gather(rows)
            old_states, _ = _state_table_of(model, saved).gather(rows)
            assert torch.equal(states, old_states)
    with pytest.raises(ValueError, match="do not match"):
        model.start_epoch({"project.weight": saved["project.weight"]})


def _table_of(model, weights):
    """The pooled table a fresh copy of `model` builds from `weights`."""
    import copy

    twin = copy.deepcopy(model)
    twin.news_encoder.rebuild_table("pooled", weights)
    return twin.news_encoder._table


def _state_table_of(model, weights):
    import copy

    twin = copy.deepcopy(model)
    twin.news_encoder._states = None
    twin.news_encoder.rebuild_table("states", weights)
    return twin.news_encoder._states


def test_the_memory_mapped_state_table_equals_the_in_memory_one(tmp_path) -> None:
    news = catalogue(count=40, seed=3)
    batch = news.select(torch.tensor([0, 7, 33, 39, 12]))
    vectors = []
    for folder in (tmp_path, None):
        torch.manual_seed(0)  # the same weights
        model = build_model("plmnr", tiny_config(transformer_layers=2, features=ALL_FEATURES, plmnr_history="states"), SIZES)
        model.prepare_news(news, folder)
        model.start_epoch()
        model.eval()
        with torch.no_grad():
            vectors.append(model.encode_step_news(batch, torch.tensor([[0]])))
    # not bit-equal: the CPU kernels' results depend on where their buffers lie in memory (1e-6)
    assert torch.allclose(vectors[0], vectors[1], atol=1e-5), (vectors[0] - vectors[1]).abs().max()


@pytest.mark.parametrize("history", ["no-grad", "cached", "states"])
def test_history_approximations_are_part_of_the_checkpoint_identity(history) -> None:
    base = RunSettings(model="plmnr", seed=1, epochs=1, batch_size=8, eval_batch_size=8, lr=1e-3, weight_decay=0.0,
                       negatives=4, patience=1, history_len=10, model_config=ModelConfig())
    other = replace(base, model_config=ModelConfig(plmnr_history=history))
    assert "plmnr_history" not in base.identity()["model_config"]  # checkpoints from before the field still match
    assert other.identity()["model_config"]["plmnr_history"] == history
    assert base.settings_key() != other.settings_key()


def test_an_unknown_history_mode_is_a_one_line_error() -> None:
    from recsys.config import TrainConfig
    from recsys.errors import ConfigError

    for make in (lambda: TrainConfig(plmnr_history="cache"), lambda: ModelConfig(plmnr_history="cache")):
        with pytest.raises(ConfigError) as error:
            make()
        message = str(error.value)
        assert "\n" not in message and "plmnr_history" in message and "'cache'" in message
        assert "exact, no-grad, cached, states" in message


def test_the_tuned_layers_use_the_cheap_dropout() -> None:
    from torch import nn

    from recsys.layers.dropout import Dropout

    model = build_model("plmnr", tiny_config(transformer_layers=2), SIZES)
    dropouts = [m for m in model.news_encoder.modules() if isinstance(m, (nn.Dropout, Dropout))]
    assert len(dropouts) >= 6  # LoRA on query and value, the layer's three, the pooling one
    assert all(type(m) is Dropout for m in dropouts)
    lora = [m for n, m in model.news_encoder.named_modules() if n.endswith("lora_dropout.default")]
    assert lora and all(m.p == model.config.dropout for m in lora)


def test_length_buckets_partition_the_rows_by_length() -> None:
    from recsys.models.lm_news import length_buckets

    lengths = torch.tensor([9, 3, 7, 3, 1, 5, 8])
    rows = torch.tensor([6, 0, 1, 3, 5])
    buckets = length_buckets(rows, lengths, 2)
    assert [b.tolist() for b in buckets] == [[1, 3, 5], [6, 0]]  # lengths 3,3,5 then 8,9
    assert sorted(torch.cat(length_buckets(rows, lengths, 9)).tolist()) == sorted(rows.tolist())
    assert all(b.numel() for b in length_buckets(rows, lengths, 9))
    assert [b.tolist() for b in length_buckets(rows, None, 4)] == [rows.tolist()]
    assert length_buckets(torch.tensor([], dtype=torch.long), lengths, 4) == []


def test_the_packed_top_layer_equals_transformers_layer_on_the_real_tokens() -> None:
    from recsys.lm_split import BertSplit, LoraRecipe
    from recsys.pretrained import minilm_path

    torch.manual_seed(0)
    split = BertSplit(minilm_path(), 2, 1, LoraRecipe(rank=4, alpha=8, dropout=0.1))
    for name, parameter in split.named_parameters():
        if "lora_B" in name:  # B starts at zero: make the adapters count
            torch.nn.init.normal_(parameter, std=0.1)
    lengths = torch.tensor([9, 2, 5, 1, 9, 4])
    mask = torch.arange(9) < lengths[:, None]
    states = torch.randn(6, 9, split.hidden_size)
    garbage = torch.where(mask[..., None], states, 1e3 * torch.randn_like(states))  # padding unseen
    split.eval()  # no dropout: the two must then agree
    assert split.packs_tokens(torch.device("cpu"))
    tuned = [p for p in split.parameters() if p.requires_grad]

    def run(layer, inputs: torch.Tensor, constant: int = 0):
        """outputs, input gradient of columns >= constant, tuned gradients; columns < constant
        are constants (no gradient), as the cached text is"""
        variable = inputs[:, constant:].clone().requires_grad_(True)
        joined = torch.cat([inputs[:, :constant], variable], dim=1)
        out = layer(joined, mask, constant) * mask[..., None]
        grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.shape[-1])).square().sum(), [variable, *tuned])
        return out, grads[0] * mask[:, constant:, None], grads[1:]

    for constant in (0, 4, 9):  # 9: every real token constant, the gradient reaches LoRA only
        want_out, want_input, want_tuned = run(lambda x, m, _: split.upper_padded(x, m), states, constant)
        for inputs in (states, garbage):
            out, input_grad, tuned_grads = run(split.upper, inputs, constant)
            assert torch.allclose(out, want_out, atol=1e-5), (out - want_out).abs().max()
            assert torch.allclose(input_grad, want_input, atol=1e-4)
            assert all(torch.allclose(g, w, atol=1e-4) for g, w in zip(tuned_grads, want_tuned))
    assert split.upper(states[:0], mask[:0], 4).shape == (0, 9, split.hidden_size)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 = "on"
        low = split.upper(states, mask, 4) * mask[..., None]
        assert torch.allclose(low.float(), split.upper_padded(states, mask).float() * mask[..., None], atol=0.1)
    for name, module in split.named_modules():  # every dropout off but the attention weights'
        if hasattr(module, "p") and not name.endswith("attention.self.dropout"):
            module.p = 0.0
    split.train()  # the attention dropout acts in the packed layer too
    assert not torch.allclose(split.upper(states, mask), split.upper(states, mask))
    split.layers[0].attention.self.dropout.p = 0.0
    assert torch.allclose(split.upper(states, mask) * mask[..., None], want_out, atol=1e-5)
