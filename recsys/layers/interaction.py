"""Feature-interaction layers of the ranking models: MLP, cross network (DCN), inner-product
layer (PNN), local activation unit (DIN)."""

from __future__ import annotations

import torch
from torch import nn

from recsys.layers.dropout import Dropout


class MLP(nn.Module):
    """Linear -> ReLU -> Dropout blocks, then an optional plain output layer."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], out_dim: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_dim, width), nn.ReLU(), Dropout(dropout)]
            in_dim = width
        if out_dim is not None:
            layers.append(nn.Linear(in_dim, out_dim))
            in_dim = out_dim
        self.layers = nn.Sequential(*layers)
        self.out_dim = in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class CrossNetwork(nn.Module):
    """DCN (Wang et al., 2017): x_{l+1} = x_0 (x_l . w_l) + b_l + x_l, explicit bounded-degree crosses."""

    # w_l are vectors but weights (of the map x -> x . w_l), decayed under decay_scope "weights"
    # like any weight matrix (recsys/optim.py); the biases b_l are not.
    decayed_vectors = ("weights",)

    def __init__(self, dim: int, num_layers: int = 3) -> None:
        super().__init__()
        self.weights = nn.ParameterList(nn.Parameter(torch.randn(dim) * dim**-0.5) for _ in range(num_layers))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(dim)) for _ in range(num_layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for w, b in zip(self.weights, self.biases, strict=True):
            x = x0 * (x @ w).unsqueeze(-1) + b + x
        return x


class InnerProductLayer(nn.Module):
    """IPNN product layer (Qu et al., 2016) over F fields f_i in R^D.

    Outputs [linear signals l_z; quadratic signals l_p]: l_z^n = Σ_i <W_z^n_i, f_i> and
    l_p^n = Σ_ij θ^n_i θ^n_j <f_i, f_j> = ||Σ_i θ^n_i f_i||², the paper's first-order decomposition
    of W_p^n, plus the raw pairwise inner products <f_i, f_j> (i < j).
    """

    def __init__(self, num_fields: int, dim: int, out_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(num_fields * dim, out_dim, bias=False)
        self.theta = nn.Parameter(torch.randn(out_dim, num_fields) * num_fields**-0.5)
        rows, cols = torch.triu_indices(num_fields, num_fields, offset=1)
        self.register_buffer("pair_rows", rows, persistent=False)
        self.register_buffer("pair_cols", cols, persistent=False)
        self.out_dim = 2 * out_dim + rows.numel()

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        """fields [B, F, D] -> [B, out_dim]."""
        l_z = self.linear(fields.flatten(1))
        l_p = torch.einsum("nf,bfd->bnd", self.theta, fields).pow(2).sum(-1)
        pairs = (fields[:, self.pair_rows] * fields[:, self.pair_cols]).sum(-1)
        return torch.cat([l_z, l_p, pairs], dim=-1)


class DINActivationUnit(nn.Module):
    """DIN (Zhou et al., 2018) local activation unit: weight of history item h for candidate c
    from an MLP over [h, c, h - c, h * c]; weights are NOT softmax-normalised, as in DIN, so the
    pooled vector's magnitude keeps the intensity of the user's interest.

    Computed without materialising [h, c, h - c, h * c] for every slot, and only on the real
    history items (padded slots get weight 0 anyway): the first layer's W [h; c; h - c; h * c]
    = (W_h + W_d) h + W_p (h * c) + (W_c - W_d) c, whose last term is one row per user. A batch's
    histories are mostly padding (a quarter of the 50 slots are real on the synthetic sets), so
    this was most of DIN's step. The parameters are the plain MLP's (`mlp`), checkpoints unchanged."""

    def __init__(self, dim: int, hidden: tuple[int, ...] = (80, 40)) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("the DIN activation unit needs at least one hidden layer")
        layers: list[nn.Module] = []
        in_dim = 4 * dim
        for width in hidden:
            layers += [nn.Linear(in_dim, width), nn.PReLU()]
            in_dim = width
        layers.append(nn.Linear(in_dim, 1))
        self.mlp = nn.Sequential(*layers)
        self.dim = dim

    def weights(self, items: torch.Tensor, candidates: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        """Activation weight [M] of each history item [M, D] for its user's candidate (candidates
        [B, D], owner [M]: which row of the batch each item belongs to)."""
        first = self.mlp[0]
        w_h, w_c, w_d, w_p = first.weight.split(self.dim, dim=1)
        per_user = nn.functional.linear(candidates, w_c - w_d, first.bias)  # [B, hidden]
        per_item = nn.functional.linear(torch.cat([items, items * candidates[owner]], dim=-1),
                                        torch.cat([w_h + w_d, w_p], dim=1))
        x = per_item + per_user[owner]
        return self.mlp[1:](x).squeeze(-1)

    def forward(self, history: torch.Tensor, candidate: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """history [B, H, D], candidate [B, D], mask [B, H] -> pooled [B, D]."""
        batch, length, dim = history.shape
        if mask is None:
            owner = torch.arange(batch, device=history.device).repeat_interleave(length)
            items = history.reshape(batch * length, dim)
        else:
            owner, slot = mask.to(torch.bool).nonzero(as_tuple=True)
            items = history[owner, slot]
        weighted = self.weights(items, candidate, owner).unsqueeze(-1) * items
        return weighted.new_zeros(batch, dim).index_add(0, owner, weighted)
