"""Diagnostics of host behaviour that depends on the batch: ACM/ALCNet's top-down gates.

ACM's fusion pools the deep feature globally and applies BatchNorm before the sigmoid gate. In
training mode the BatchNorm normalises one number per image and channel over the batch, so an
image's gate depends on the other images of its batch (at batch 2 the normalised values are
exactly +-1). :func:`topdown_gate_spread` measures that dependence and the gap to the gate the
network uses at test time (eval mode, running statistics).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn


def _topdown_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if name.endswith("topdown")}


@torch.no_grad()
def topdown_gate_spread(model: nn.Module, images: torch.Tensor, batch_sizes: Sequence[int] = (2, 4, 8, 16),
                        trials: int = 8, seed: int = 0) -> list[dict[str, Any]]:
    """For each batch size ``B``: put every image of ``images`` (N, C, H, W; normalised host
    inputs of one size) into ``trials`` random batches of ``B`` images, run the model in training
    mode (BatchNorm on batch statistics; running statistics restored afterwards; dropout off) and
    record each fusion's top-down gate of that image.

    Returns one row per (module, B) with ``spread`` (mean over images and channels of the gate's
    standard deviation across batch compositions: 0 means the batch does not matter) and
    ``gap_to_eval`` (mean absolute difference to the eval-mode gate of the same image).
    """
    modules = _topdown_modules(model)
    if not modules:
        raise ValueError(f"{type(model).__name__} has no module named '*topdown' (ACM/ALCNet fusions)")
    n = images.shape[0]
    captured: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda mod, inp, out, key=k: captured.__setitem__(key, out.flatten(1)))
               for k, m in modules.items()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    was_training = model.training
    try:
        model.eval()
        model(images)
        eval_gates = {k: v.clone() for k, v in captured.items()}
        rows = []
        rng = np.random.default_rng(seed)
        for b in batch_sizes:
            if b > n:
                continue
            gates = {k: [[] for _ in range(n)] for k in modules}
            for _ in range(trials):
                for i in range(n):
                    others = rng.choice(np.delete(np.arange(n), i), size=b - 1, replace=False)
                    idx = torch.as_tensor(np.concatenate([[i], others]))
                    model.train()
                    for m in model.modules():
                        if isinstance(m, nn.Dropout):
                            m.eval()
                    model(images[idx])
                    for k in modules:
                        gates[k][i].append(captured[k][0].clone())
            for k in modules:
                g = torch.stack([torch.stack(per) for per in gates[k]])   # (N, trials, C)
                rows.append({"module": k, "batch_size": b,
                             "spread": float(g.std(dim=1).mean()),
                             "gap_to_eval": float((g - eval_gates[k][:, None]).abs().mean())})
    finally:
        for h in handles:
            h.remove()
        model.load_state_dict(state)
        model.train(was_training)
    return rows
