"""The optimizer (GENRE: Adam with L2 weight decay 0.01; AdamW as an option) and the [train]
keys that choose it and the interest fusion."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from recsys.config import TrainConfig
from recsys.errors import ConfigError
from recsys.experiment import model_config, run_settings
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


def test_train_config_defaults_and_checks() -> None:
    config = TrainConfig()
    assert (config.optimizer, config.weight_decay, config.interest_fusion) == ("adam", 0.01, "gated")
    with pytest.raises(ConfigError, match="optimizer.*adam, adamw.*'sgd'"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ConfigError, match="interest_fusion.*gated, paper.*'mlp'"):
        TrainConfig(interest_fusion="mlp")


class _Data:
    dataset, variant, profiles = "d", "up", object()


def test_optimizer_and_fusion_reach_the_run_and_its_settings_hash() -> None:
    adam = run_settings("nrms", _Data(), TrainConfig(), 1)
    adamw = run_settings("nrms", _Data(), TrainConfig(optimizer="adamw"), 1)
    paper = run_settings("nrms", _Data(), TrainConfig(interest_fusion="paper"), 1)
    assert (adam.optimizer, adamw.optimizer) == ("adam", "adamw")
    assert adam.identity()["optimizer"] == "adam"
    assert len({adam.settings_key(), adamw.settings_key(), paper.settings_key()}) == 3
    assert model_config(TrainConfig(interest_fusion="paper"), True).interest_fusion == "paper"
    assert RunSettings.__dataclass_fields__["optimizer"].default == "adam"
    assert dataclasses.asdict(TrainConfig(optimizer="adamw"))["optimizer"] == "adamw"  # the run's stored config
