"""Metric plots (matplotlib, Agg backend; imported lazily by the CLI)."""

from __future__ import annotations

import os
from collections.abc import Sequence


def plot_threshold_sweep(curves: Sequence, out_png: str | os.PathLike, *, metric: str = "AP_nc50",
                         title: str | None = None) -> str:
    """The paper's Figure 7: AP_nc (mean over seeds, in %) against the score threshold, one line per detector
    with a +-1 std band and a marker at its best threshold. ``curves`` are
    :class:`rscovlm.eval.sweep.SweepCurve` objects (or anything with ``name``, ``thresholds``, ``mean``, ``std``,
    ``best_threshold``). Writes ``out_png`` and returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=150)
    for k, c in enumerate(curves):
        t = np.asarray(c.thresholds)
        m = 100 * np.asarray(c.mean[metric])
        s = 100 * np.asarray(c.std[metric])
        color = f"C{k % 10}"
        ax.plot(t, m, "-o", ms=3, lw=1.5, color=color, label=c.name)
        ax.fill_between(t, m - s, m + s, color=color, alpha=0.2, lw=0)
        b = int(np.argmin(np.abs(t - c.best_threshold)))
        ax.plot([t[b]], [m[b]], marker="*", ms=11, color=color, mec="black", mew=0.6)
    ax.set_xlabel("score threshold")
    ax.set_ylabel(f"{metric.replace('AP_nc', 'AP$_{nc}$')} (%)")
    ax.set_xlim(-0.02, 0.97)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title or "AP$_{nc}$ vs score threshold (mean $\\pm$ std over seeds; $\\star$ = best)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    return str(out_png)
