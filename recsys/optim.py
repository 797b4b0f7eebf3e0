"""The optimizer and which parameters its weight decay reaches.

GENRE §4.1: "we employ Adam optimizer with a learning rate of 0.001 and weight decay of 0.01". The
paper does not say which parameters the decay reaches. With Adam the L2 term (weight_decay * p,
added to the gradient) passes through Adam's per-coordinate normalisation, so wherever a
parameter's own loss gradient is zero or tiny the step is about a full `lr` towards zero, every
step. Three places in these models are such:

- lookup-table rows (word, category, topic, user embeddings): a row's loss gradient is zero in
  every batch that does not hold its id, yet the L2 term pulls it each step. Measured on the fusion
  test's synthetic set (BENCHMARKS §9): the word rows' RMS fell from 1.0 to 0.56 in two epochs;
  exempting tables and vectors lifted NRMS `original` AUC from 0.5655 to 0.5794.
- the gated interest fusion (recsys/layers/fusion.py): its gate starts at exactly 0, so nothing
  behind it has a loss gradient at first; the L2 term alone drives the MLP behind it to zero
  before the gate can learn anything, and true profiles stopped helping (0.563 against 0.566).
- LoRA adapters (PLMNR's and DIRE's tuned top layer, peft): B starts at 0, so A has no loss
  gradient at first and its decay is a full lr step towards zero every step, the gate's case: in
  a two-epoch PLMNR run the query adapter ended at RMS 6e-4 (0.08 exempt; BENCHMARKS §9). B,
  A's partner in the update B·A, is exempt with it.

decay_scope "weights" (the default) therefore decays weight matrices only: every trainable
parameter of two or more dimensions outside a lookup table, outside a module that declares
`exempt_from_decay` (the gated fusion) and outside a LoRA adapter (the sub-modules a peft layer
names in `adapter_layer_names`: lora_A, lora_B, ...). Biases and other vectors (attention
queries, default vectors) are left alone too, as is usual for L2, except the vectors a module
names in `decayed_vectors`: DCN's cross weights w_l are the weights of the map x -> x . w_l (a
rank-1 layer, one per cross layer), with a loss gradient in every batch, and are decayed like any
weight (as DeepCTR's CrossNet regularises its kernels and not its biases). "all" decays every
trainable parameter (plain `torch.optim.Adam(model.parameters(), weight_decay=...)`, this
project's behaviour before).

`decay_rule` numbers the "weights" rule; RunSettings.identity carries it for the models whose
parameter groups it changed (a checkpoint's optimizer state would not load into other groups).
"""

from __future__ import annotations

import torch
from torch import nn

from recsys.catalog import DECAY_SCOPES

# The "weights" rule's version: 2 exempts LoRA adapters and decays DCN's cross weights (1 did the
# opposite for both). Only these models' parameter groups differ between the two.
DECAY_RULE = 2
DECAY_RULE_CHANGED = ("dcn", "plmnr", "dire")


def decayed_names(model: nn.Module, scope: str = "weights") -> tuple[list[str], list[str]]:
    """(decayed, exempt) names of the trainable parameters under `scope` (model.named_parameters order)."""
    if scope not in DECAY_SCOPES:
        raise ValueError(f"decay scope {scope!r} is unknown; use one of {', '.join(DECAY_SCOPES)}")
    exempt_ids: set[int] = set()
    vector_ids: set[int] = set()  # 1-D parameters that are weights (decayed_vectors)
    if scope == "weights":
        for module in model.modules():
            if isinstance(module, nn.Embedding) or getattr(module, "exempt_from_decay", False):
                exempt_ids.update(id(p) for p in module.parameters())
            for adapter in getattr(module, "adapter_layer_names", ()):  # peft's LoRA layers
                if isinstance(part := getattr(module, adapter, None), nn.Module):
                    exempt_ids.update(id(p) for p in part.parameters())
            for prefix in getattr(module, "decayed_vectors", ()):
                vector_ids.update(id(p) for name, p in module.named_parameters()
                                  if name == prefix or name.startswith(prefix + "."))
    decayed: list[str] = []
    exempt: list[str] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        vector = param.ndim < 2 and id(param) not in vector_ids
        skip = scope == "weights" and (vector or id(param) in exempt_ids)
        (exempt if skip else decayed).append(name)
    return decayed, exempt


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, kind: str = "adam",
                   scope: str = "weights") -> torch.optim.Optimizer:
    """The optimizer over the trainable parameters only (PLMNR's frozen MiniLM stays out), in two
    groups: the decayed ones (`weight_decay`) and the exempt ones (0), per `scope` (decayed_names).

    kind "adam" is GENRE's: Adam with L2 weight decay, i.e. weight_decay * p is added to the
    gradient before the moment estimates (torch.optim.Adam); "adamw" decays the weights apart from
    the gradient (torch.optim.AdamW). The fused kernel is ~10x faster on CPU for the embedding."""
    classes = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if kind not in classes:
        raise ValueError(f"optimizer {kind!r} is unknown; use one of {', '.join(classes)}")
    decayed, exempt = decayed_names(model, scope)
    params = dict(model.named_parameters())
    groups = [{"params": [params[n] for n in names], "weight_decay": decay}
              for names, decay in ((decayed, weight_decay), (exempt, 0.0)) if names]
    try:
        return classes[kind](groups, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return classes[kind](groups, lr=lr, weight_decay=weight_decay)
