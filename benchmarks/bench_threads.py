"""Does the number of torch threads change training arithmetic on this CPU? Three Adam steps of
ACM on one fixed batch with 1 and with 2 threads (channels-last, as the baseline runs use), then
the largest difference between the two sets of weights. Non-zero means a CPU run reproduces bit
for bit only with the same ``--threads``.

    python benchmarks/bench_threads.py          # writes results/benchmarks/threads.json
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from irlib.models import create_model  # noqa: E402
from irlib.paths import results_root  # noqa: E402
from irlib.repro import run_metadata, write_json  # noqa: E402


def weights_after_steps(threads: int, steps: int = 3) -> torch.Tensor:
    """ACM's flattened weights after ``steps`` Adam steps on a fixed random batch."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model("acm").to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 5e-4)
    x = torch.randn(8, 1, 128, 128, generator=torch.Generator().manual_seed(1)).to(memory_format=torch.channels_last)
    for _ in range(steps):
        loss = torch.sigmoid(model(x)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def main() -> None:
    one, two = weights_after_steps(1), weights_after_steps(2)
    result = {"identical": bool(torch.equal(one, two)), "max_abs_diff": float((one - two).abs().max()),
              "steps": 3, "threads": [1, 2]}
    print(result)
    out = results_root(None) / "benchmarks" / "threads.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, {**result, "meta": run_metadata({})})


if __name__ == "__main__":
    main()
