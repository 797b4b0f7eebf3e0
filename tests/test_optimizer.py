"""The optimizer (GENRE: Adam with L2 weight decay 0.01; AdamW as an option), which parameters the
decay reaches (recsys/optim.py), and the [train] keys that choose them and the interest fusion."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from recsys.config import TrainConfig
from recsys.errors import ConfigError
from recsys.experiment import model_config, run_settings
from recsys.optim import decayed_names
from recsys.train import RunSettings, make_optimizer


def _one_step(kind: str, grad: float) -> float:
    layer = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(2.0)
    optimizer = make_optimizer(layer, lr=0.1, weight_decay=0.01, kind=kind)
    layer.weight.grad = torch.full_like(layer.weight, grad)
    optimizer.step()
    return float(layer.weight.detach())


def test_adam_adds_l2_to_the_gradient_and_adamw_decays_apart() -> None:
    # No loss gradient: Adam's gradient is 0.01 * w alone, so its first step is a full lr step
    # (m / sqrt(v) = 1); AdamW only shrinks w by lr * wd.
    assert _one_step("adam", 0.0) == pytest.approx(2.0 - 0.1, abs=1e-5)
    assert _one_step("adamw", 0.0) == pytest.approx(2.0 * (1 - 0.1 * 0.01), abs=1e-6)


def test_optimizer_classes_and_trainable_parameters_only() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    model[0].weight.requires_grad_(False)
    adam, adamw = make_optimizer(model, 1e-3, 0.01), make_optimizer(model, 1e-3, 0.01, "adamw")
    assert type(adam) is torch.optim.Adam and type(adamw) is torch.optim.AdamW
    assert adam.defaults["weight_decay"] == 0.01
    # the fused kernel (about 9x faster per step than the plain loop on a 30k-row embedding, CPU)
    assert adam.defaults["fused"] and adamw.defaults["fused"]
    assert sum(len(g["params"]) for g in adam.param_groups) == 3  # the frozen weight stays out
    with pytest.raises(ValueError, match="sgd"):
        make_optimizer(model, 1e-3, 0.01, "sgd")


def _nrms(fusion: str = "gated"):
    from recsys.models import build_model
    from tests.support_models import SIZES, tiny_config

    torch.manual_seed(0)
    return build_model("nrms", tiny_config(use_profile=True, interest_fusion=fusion), SIZES)


def test_weights_scope_decays_weight_matrices_only() -> None:
    model = _nrms()
    decayed, exempt = decayed_names(model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(decayed + exempt) == sorted(trainable)
    params = dict(model.named_parameters())
    # decayed: the attention projections and the additive attention's W, all matrices
    assert decayed and all(params[n].ndim == 2 for n in decayed)
    assert {"news_attention.qkv.weight", "user_encoder.attention.out.weight", "news_pool.project.weight"} <= set(decayed)
    # exempt: lookup tables, biases and vectors, and everything in the gated fusion
    assert {"embedder.words.table.weight", "embedder.category.weight", "news_attention.qkv.bias",
            "news_pool.query"} <= set(exempt)
    assert [n for n in trainable if n.startswith("fusion.")] == [n for n in exempt if n.startswith("fusion.")]
    assert "fusion.mlp.0.weight" in exempt
    # the paper form's MLP is on the main path: decayed like any matrix (its tables are not)
    paper_decayed, paper_exempt = decayed_names(_nrms("paper"))
    assert "fusion.mlp.0.weight" in paper_decayed and "fusion.topics.weight" in paper_exempt
    # "all": every trainable parameter, as torch.optim.Adam(model.parameters(), weight_decay=...)
    assert decayed_names(model, "all") == (trainable, [])
    with pytest.raises(ValueError, match="'rows' is unknown; use one of weights, all"):
        decayed_names(model, "rows")


def test_optimizer_groups_carry_the_decay_and_exempt_rows_stay_put() -> None:
    """With no loss gradient, Adam's L2 term alone moves a parameter a full lr towards zero; under
    "weights" a table row and the gated fusion's MLP keep their values, a weight matrix does not."""
    for scope in ("weights", "all"):
        model = _nrms()
        optimizer = make_optimizer(model, lr=0.1, weight_decay=0.01, scope=scope)
        decayed, exempt = decayed_names(model, scope)
        assert [g["weight_decay"] for g in optimizer.param_groups] == ([0.01, 0.0] if exempt else [0.01])
        params = dict(model.named_parameters())
        assert [id(p) for g in optimizer.param_groups for p in g["params"]] == [id(params[n]) for n in decayed + exempt]
        before = {n: p.detach().clone() for n, p in params.items()}
        for p in params.values():
            p.grad = torch.zeros_like(p)
        optimizer.step()
        for name in ("embedder.words.table.weight", "fusion.mlp.0.weight", "news_attention.qkv.weight"):
            moved = (params[name].detach() - before[name]).abs()
            nonzero = before[name].abs() > 1e-3  # Adam's eps shortens the step of tinier weights
            if name in decayed:
                assert torch.allclose(moved[nonzero], torch.full_like(moved[nonzero], 0.1), atol=1e-4), (scope, name)
            else:
                assert torch.equal(params[name].detach(), before[name]), (scope, name)


def test_train_config_defaults_and_checks() -> None:
    config = TrainConfig()
    assert (config.optimizer, config.weight_decay, config.interest_fusion) == ("adam", 0.01, "gated")
    assert config.decay_scope == "weights"
    with pytest.raises(ConfigError, match="optimizer.*adam, adamw.*'sgd'"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ConfigError, match="decay_scope.*weights, all.*'rows'"):
        TrainConfig(decay_scope="rows")
    with pytest.raises(ConfigError, match="interest_fusion.*gated, paper.*'mlp'"):
        TrainConfig(interest_fusion="mlp")


class _Data:
    dataset, variant, profiles = "d", "up", object()


def test_optimizer_and_fusion_reach_the_run_and_its_settings_hash() -> None:
    adam = run_settings("nrms", _Data(), TrainConfig(), 1)
    adamw = run_settings("nrms", _Data(), TrainConfig(optimizer="adamw"), 1)
    paper = run_settings("nrms", _Data(), TrainConfig(interest_fusion="paper"), 1)
    decay_all = run_settings("nrms", _Data(), TrainConfig(decay_scope="all"), 1)
    assert (adam.optimizer, adamw.optimizer) == ("adam", "adamw")
    assert (adam.decay_scope, decay_all.decay_scope) == ("weights", "all")
    assert adam.identity()["optimizer"] == "adam" and adam.identity()["decay_scope"] == "weights"
    # checkpoints from before the field decayed every parameter: under "all" they still match
    assert "decay_scope" not in decay_all.identity()
    # a checkpoint never resumes under another optimizer, decay scope or fusion (other param groups)
    assert len({adam.settings_key(), adamw.settings_key(), paper.settings_key(), decay_all.settings_key()}) == 4
    assert model_config(TrainConfig(interest_fusion="paper"), True).interest_fusion == "paper"
    assert RunSettings.__dataclass_fields__["optimizer"].default == "adam"
    assert dataclasses.asdict(TrainConfig(optimizer="adamw"))["optimizer"] == "adamw"  # the run's stored config


class _Adapted(nn.Module):
    """A LoRA-tuned projection (peft, as PLMNR's and DIRE's top layer) beside a plain trainable one."""

    def __init__(self) -> None:
        from recsys.lm_split import LoraRecipe, _add_lora

        super().__init__()
        self.query = nn.Linear(4, 4)
        _add_lora(self, ["query"], LoraRecipe(rank=2, alpha=4, dropout=0.0))
        self.head = nn.Linear(4, 1, bias=False)  # added after _add_lora: trainable, a plain weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.query(x))


def test_lora_adapters_are_exempt_under_weights_and_decayed_under_all() -> None:
    """B starts at 0, so A's loss gradient is exactly 0; Adam's L2 term alone then walks A a full lr
    towards zero every step under "all", and leaves it put under "weights" (as the gated fusion)."""
    steps, lr = 5, 0.01
    for scope in ("weights", "all"):
        torch.manual_seed(0)
        model = _Adapted()
        a, b = "query.lora_A.default.weight", "query.lora_B.default.weight"
        decayed, exempt = decayed_names(model, scope)
        assert (decayed, exempt) == ((["head.weight"], [a, b]) if scope == "weights" else ([a, b, "head.weight"], []))
        optimizer = make_optimizer(model, lr=lr, weight_decay=0.01, scope=scope)
        params = dict(model.named_parameters())
        start = params[a].detach().clone()
        for _ in range(steps):
            optimizer.zero_grad()
            with torch.no_grad():
                params[b].zero_()  # keep B at 0, so A never gets a loss gradient
            model(torch.randn(8, 4)).pow(2).mean().backward()
            assert torch.equal(params[a].grad, torch.zeros_like(start))
            optimizer.step()
        moved = (start - params[a].detach()).abs()
        if scope == "weights":
            assert torch.equal(params[a].detach(), start)
        else:  # about a full lr per step towards zero (the L2 term shrinks with A, so a bit less)
            big = start.abs() > steps * lr
            assert big.any() and ((moved[big] > 0.95 * steps * lr) & (moved[big] <= steps * lr + 1e-6)).all()
            assert (params[a].detach().abs() < start.abs()).all()


def test_dcn_cross_weights_are_decayed_and_its_biases_not() -> None:
    """DCN's cross weights w_l are 1-D but weights (of x -> x . w_l): decayed under "weights" by
    name (CrossNetwork.decayed_vectors), unlike the cross biases and other vectors."""
    from recsys.models import build_model
    from tests.support_models import SIZES, tiny_config

    model = build_model("dcn", tiny_config(), SIZES)
    decayed, exempt = decayed_names(model)
    crosses = [n for n in decayed + exempt if n.startswith("cross.")]
    assert sorted(crosses) == sorted([f"cross.weights.{i}" for i in range(3)] + [f"cross.biases.{i}" for i in range(3)])
    assert [n for n in decayed if n.startswith("cross.")] == [f"cross.weights.{i}" for i in range(3)]
    assert dict(model.named_parameters())["cross.weights.0"].ndim == 1
    assert all(dict(model.named_parameters())[n].ndim == 1 for n in exempt if not n.startswith("embedder."))


def test_decay_rule_marks_only_the_models_whose_groups_it_changed() -> None:
    """Rule 2 (LoRA exempt, cross weights decayed) gives PLMNR, DIRE and DCN other parameter groups
    than before: their checkpoints get another identity; NRMS's (unchanged groups) keeps its own."""
    for model in ("nrms", "dcn", "plmnr"):
        weights = run_settings(model, _Data(), TrainConfig(), 1).identity()
        assert ("decay_rule" in weights) == (model != "nrms")
        assert "decay_rule" not in run_settings(model, _Data(), TrainConfig(decay_scope="all"), 1).identity()
