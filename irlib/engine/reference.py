"""BasicIRSTD's published training logs, and the comparison of an irlib run against them.

The numbers below are copied from BasicIRSTD's benchmark logs (github.com/XinyiYing/BasicIRSTD,
``log/<DATASET>_<MODEL>_<date>.txt``, July 2023; summarised in ``../shared/papers/basicirstd.md``).
They are the *published reference*, never an irlib result. BasicIRSTD prints, every 10 epochs,
the mean SoftIoU loss of the last 10 epochs (``total_loss_epoch`` is reset after each print), so
irlib's per-epoch losses are compared through :func:`ten_epoch_means`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


@dataclass(frozen=True)
class ReferenceLog:
    """One published run: printed losses by epoch and the last-epoch test metrics (percent,
    Fa in 1e-6), threshold 0.5, native resolution."""

    dataset: str
    host: str
    loss: dict[int, float]
    IoU: float
    Pd: float
    Fa_1e6: float
    source: str


_ACM_NUAA = [0.998134, 0.997575, 0.996815, 0.995850, 0.993371, 0.988231, 0.976047, 0.945683, 0.878063, 0.783567,
             0.688648, 0.606862, 0.545846, 0.494184, 0.448312, 0.425546, 0.400679, 0.390591, 0.390378, 0.363945,
             0.356467, 0.347793, 0.347137, 0.343196, 0.343920, 0.334671, 0.340935, 0.334611, 0.332826, 0.331446,
             0.330067, 0.331926, 0.329833, 0.333469, 0.334569, 0.326169, 0.333918, 0.328391, 0.325078, 0.329325]
_EPOCHS7 = (50, 100, 150, 200, 250, 300, 400)


def _seven(values: Sequence[float]) -> dict[int, float]:
    return dict(zip(_EPOCHS7, values))


BASICIRSTD_LOGS: dict[tuple[str, str], ReferenceLog] = {
    ("NUAA-SIRST", "acm"): ReferenceLog("NUAA-SIRST", "acm", {10 * (i + 1): v for i, v in enumerate(_ACM_NUAA)},
                                        69.44, 92.02, 22.71, "log/NUAA-SIRST_ACM_Mon_Jul_17_17_48_49_2023.txt"),
    ("NUAA-SIRST", "alcnet"): ReferenceLog(
        "NUAA-SIRST", "alcnet", _seven([0.9985, 0.9666, 0.7914, 0.6641, 0.6334, 0.6188, 0.6171]), 61.05, 87.07, 55.98,
        "log/NUAA-SIRST_ALCNet_Mon_Jul_17_17_57_36_2023.txt"),
    ("NUAA-SIRST", "dnanet"): ReferenceLog(
        "NUAA-SIRST", "dnanet", _seven([0.3130, 0.2134, 0.1880, 0.1721, 0.1605, 0.1549, 0.1540]), 74.82, 93.54, 38.28,
        "log/NUAA-SIRST_DNANet_Tue_Jul_18_14_16_03_2023.txt"),
    ("NUDT-SIRST", "acm"): ReferenceLog(
        "NUDT-SIRST", "acm", _seven([0.5332, 0.4006, 0.3699, 0.3525, 0.3326, 0.3274, 0.3253]), 64.85, 96.72, 28.59,
        "log/NUDT-SIRST_ACM_Mon_Jul_17_20_01_46_2023.txt"),
    ("NUDT-SIRST", "alcnet"): ReferenceLog(
        "NUDT-SIRST", "alcnet", _seven([0.9953, 0.9811, 0.9237, 0.7778, 0.7376, 0.7205, 0.7148]), 61.13, 97.25, 29.09,
        "log/NUDT-SIRST_ALCNet_Fri_Jul_21_21_45_26_2023.txt"),
    ("NUDT-SIRST", "dnanet"): ReferenceLog(
        "NUDT-SIRST", "dnanet", _seven([0.2049, 0.1677, 0.1161, 0.0956, 0.0689, 0.0654, 0.0628]), 94.19, 99.26, 2.39,
        "log/NUDT-SIRST_DNANet_Tue_Jul_18_21_31_40_2023.txt"),
}


def reference_log(dataset: str, host: str) -> ReferenceLog | None:
    """The published BasicIRSTD run of ``host`` on ``dataset``, if there is one."""
    for (d, h), log in BASICIRSTD_LOGS.items():
        if d.lower() == dataset.lower() and h == host.lower():
            return log
    return None


def ten_epoch_means(losses: Sequence[float], every: int = 10) -> dict[int, float]:
    """What BasicIRSTD prints: at epochs ``every, 2 * every, ...`` the mean loss of the last
    ``every`` epochs (epochs are 1-based)."""
    x = np.asarray(losses, dtype=float)
    return {e: float(x[e - every:e].mean()) for e in range(every, len(x) + 1, every)}


def compare_losses(losses: Sequence[float], log: ReferenceLog,
                   epochs: Sequence[int] = _EPOCHS7) -> list[dict[str, Any]]:
    """Rows ``epoch, irlib (10-epoch mean), published, difference`` at ``epochs`` the run reached."""
    ours = ten_epoch_means(losses)
    return [{"epoch": e, "loss_irlib": ours[e], "loss_published": log.loss[e], "difference": ours[e] - log.loss[e]}
            for e in epochs if e in ours and e in log.loss]


def plot_against_reference(runs: Sequence[tuple[str, Sequence[float]]], log: ReferenceLog, title: str) -> Any:
    """Loss curves (10-epoch means, as BasicIRSTD prints them) of irlib runs next to the
    published one. ``runs`` are ``(label, per-epoch losses)``."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ref = sorted(log.loss.items())
    ax.plot(*zip(*ref), "k-o", ms=3, lw=2, label=f"BasicIRSTD published log ({log.source.split('/')[-1]})")
    for label, losses in runs:
        means = sorted(ten_epoch_means(losses).items())
        if means:
            ax.plot(*zip(*means), "-o", ms=3, alpha=0.85, label=label)
    ax.set(xlabel="epoch", ylabel="SoftIoU training loss (mean of the last 10 epochs)", title=title, ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
