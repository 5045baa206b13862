"""fit under torchrun: 2 CPU processes (gloo) train to the weights of one process with the same
global batch; only rank 0 writes; distributed resume is exact; batch sharding rules.

The file is also the worker script: ``python -m torch.distributed.run --standalone
--nproc_per_node 2 tests/test_distributed.py OUT`` runs :func:`worker` in each process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from irlib.engine import History, Normalize, fit
from irlib.engine.distributed import DistContext
from irlib.errors import IrlibInputError

NORM = Normalize(0.2, 0.25)
# 11 images, global batch 4, last partial batch kept: batches of 4, 4, 3 (split 2 + 1 over 2 ranks)
SETTINGS = dict(optimizer="sgd", lr=0.2, momentum=0.9, weight_decay=1e-4, batch_size=4, drop_last=False,
                epochs=2, loss="softiou")
needs_gloo = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with the gloo backend is not available")


class Squares(Dataset):
    """Dim noisy images, one bright 4x4 target each (deterministic: no augmentation)."""

    def __init__(self, n: int = 11, size: int = 16, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.items = []
        for i in range(n):
            img = rng.uniform(0.1, 0.3, (size, size)).astype(np.float32)
            mask = np.zeros((size, size), np.float32)
            y, x = rng.integers(1, size - 5, 2)
            mask[y:y + 4, x:x + 4] = 1
            img[mask > 0] = 0.9
            self.items.append({"image": torch.from_numpy(img)[None], "mask": torch.from_numpy(mask)[None],
                               "name": f"img{i:02d}"})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def net(seed: int = 0) -> nn.Module:
    """A small FCN with GroupNorm (per-image statistics: the same on any shard of the batch)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 1))


def run(model: nn.Module, ckpt: Path | None, **kw) -> History:
    """``fit`` with the test's settings (monitoring and validation sets included), ``kw`` replacing."""
    opts = {"eval_set": Squares(3, seed=5), "val_set": Squares(3, seed=6), **SETTINGS, **kw}
    return fit(model, Squares(), normalize=NORM, device="cpu", seed=3, progress=False, checkpoint_dir=ckpt, **opts)


# ---------------------------------------------------------------------------- the worker
def worker(out: Path) -> None:
    """One rank: an uninterrupted run, a run stopped at step 2 and resumed, error cases; every
    file the engine writes is recorded."""
    import irlib.engine.checkpoint as checkpoint
    import irlib.repro as repro

    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    writes: list[str] = []
    original = repro.atomic_write_bytes

    def spy(path, data: bytes) -> None:
        writes.append(str(path))
        original(path, data)

    repro.atomic_write_bytes = checkpoint.atomic_write_bytes = spy
    model = net()
    history = run(model, out / "a")
    torch.save({"state": model.state_dict(), "rows": history.rows}, out / f"a_rank{rank}.pt")

    stopped = run(net(), out / "b", max_steps=2, checkpoint_every=1)
    resumed = net(seed=9)
    torch.manual_seed(123)
    history_b = run(resumed, out / "b", resume=True)
    torch.save({"state": resumed.state_dict(), "rows": history_b.rows, "stopped_steps": stopped.global_step},
               out / f"b_rank{rank}.pt")

    errors = {}
    for name, kw in {"odd_batch": {"batch_size": 3}, "sync_bn": {"sync_bn": True}}.items():
        try:
            run(net(), None, **kw)
        except IrlibInputError as exc:
            errors[name] = str(exc)
    (out / f"rank{rank}.json").write_text(json.dumps({"writes": writes, "errors": errors}))


# ---------------------------------------------------------------------------- unit tests
def test_shards_cover_the_global_batch_in_order() -> None:
    for world in (2, 3, 4):
        for n in (4, 7, 12):
            ctxs = [DistContext(r, world, torch.device("cpu")) for r in range(world)]
            bounds = [c.bounds(n) for c in ctxs]
            assert [lo for lo, _ in bounds] == [0] + [hi for _, hi in bounds[:-1]] and bounds[-1][1] == n
            assert max(c.sizes(n)[0] for c in ctxs) - min(ctxs[0].sizes(n)) <= 1


def test_batch_rules() -> None:
    ctx = DistContext(0, 4, torch.device("cpu"))
    ctx.check_batches(8, [8, 8, 5])
    with pytest.raises(IrlibInputError, match="not divisible by the world size 4"):
        ctx.check_batches(6, [6, 6])
    with pytest.raises(IrlibInputError, match="batch of 3 images cannot be split over 4"):
        ctx.check_batches(8, [8, 3])


def test_single_process_ignores_sync_bn() -> None:
    a, b = net(), net()
    run(a, None, epochs=1, eval_set=None, val_set=None)
    run(b, None, epochs=1, eval_set=None, val_set=None, sync_bn=True)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@needs_gloo
def test_two_processes_match_one(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           __file__, str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    single = net()
    history = run(single, tmp_path / "single")
    ranks = [torch.load(tmp_path / f"a_rank{r}.pt") for r in range(2)]
    for got in ranks:  # the same weights and per-epoch loss as one process with the same global batch
        for k, v in single.state_dict().items():
            torch.testing.assert_close(got["state"][k], v, rtol=1e-5, atol=1e-6)
        assert [r["loss"] for r in got["rows"]] == pytest.approx([r["loss"] for r in history.rows], rel=1e-5)
        assert [r["steps"] for r in got["rows"]] == [3, 3]
    assert ranks[0]["rows"] == ranks[1]["rows"]  # rank 0's row (with its eval_/val_ scores) everywhere
    assert "eval_IoU" in ranks[1]["rows"][-1] and "val_IoU" in ranks[1]["rows"][-1]

    resumed = [torch.load(tmp_path / f"b_rank{r}.pt") for r in range(2)]
    for got in resumed:  # stopped after 2 steps, resumed in a new model: the uninterrupted run exactly
        assert got["stopped_steps"] == 2
        assert all(torch.equal(got["state"][k], v) for k, v in ranks[0]["state"].items())
        assert [r["loss"] for r in got["rows"]] == [r["loss"] for r in ranks[0]["rows"]]

    logs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert logs[1]["writes"] == [] and logs[0]["writes"]
    assert {Path(p).parent.name for p in logs[0]["writes"]} == {"a", "b"}
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["best.pt", "history.json", "last.pt"]
    for log in logs:
        assert "not divisible by the world size 2" in log["errors"]["odd_batch"]
        assert "sync_bn=True needs CUDA" in log["errors"]["sync_bn"]


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
