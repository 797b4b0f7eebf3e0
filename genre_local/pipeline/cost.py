"""What a generation task cost: the one formula behind `generation_runs.cost`, the generate
command's table and the report's cost conversion rate."""

from __future__ import annotations


def generation_cost(price_per_hour: float | None, wall_seconds: float, startup_seconds: float) -> float | None:
    """Money for a task's machine time, engine start included; None without a price (None or 0)."""
    if not price_per_hour:
        return None
    return price_per_hour * (wall_seconds + startup_seconds) / 3600
