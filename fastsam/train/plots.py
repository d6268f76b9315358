"""Training curves: one small panel per logged quantity (losses, learning rate, validation metrics)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

from fastsam.io.export import atomic_write_bytes


def plot_history(history: Sequence[dict], path: str | Path) -> Path:
    """Write a PNG of every numeric column of ``history`` (one dict per epoch, key ``epoch``) against the epoch,
    losses first. Atomic: a reader never sees a half-written image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys: list[str] = []
    for row in history:
        keys.extend(k for k, v in row.items() if k != "epoch" and isinstance(v, (int, float)) and k not in keys)
    keys.sort(key=lambda k: (not k.startswith("train/"), not k.startswith("val/"), k))
    columns = 4
    rows = max(1, -(-len(keys) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        points = [(row["epoch"], row[key]) for row in history if isinstance(row.get(key), (int, float))]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return atomic_write_bytes(path, buffer.getvalue())
