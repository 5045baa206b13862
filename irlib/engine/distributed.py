"""Multi-process data-parallel training: what :func:`irlib.engine.fit` does under ``torchrun``.

``torchrun --nproc_per_node N script.py`` sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup` reads them (or an already initialised
process group), picks ``cuda:LOCAL_RANK`` (backend ``nccl``) or the CPU (``gloo``) and
initialises the default process group when nobody has. A single process (``WORLD_SIZE`` unset
or 1) gets ``None`` and ``fit`` runs exactly as without this module.

Exactness. Every step's global batch is the single-process batch of the seeded epoch order,
cut into contiguous shards, one per rank (equal when ``batch_size`` is divisible by the world
size, which ``fit`` requires; an incomplete last batch is split as evenly as possible). Each
rank loads only its shard, then :meth:`DistContext.gather_batch` rebuilds the global batch, and
the objective is called with it and a :class:`ShardedModel`: a call takes global-batch inputs,
runs this rank's rows through :class:`~torch.nn.parallel.DistributedDataParallel` and returns
the outputs of all ranks, joined by an autograd-aware all-gather whose backward sums the
gradients over ranks. Every rank thus computes the *global-batch* loss (SoftIoU's and Dice's
batch-pooled sums, EEDM's batch quantile, per-sample weights all as in one process), and DDP's
gradient average gives the single-process gradient: ``(1/W) sum_r W dL/dout_r dout_r/dtheta``.
What still differs from one process: float summation order; randomness drawn inside the model
(dropout) or from the global RNGs by the dataset (each rank has its own seeded stream; data
randomness keyed per item, as in ``SirstTorchDataset``, is unchanged); BatchNorm statistics,
which are per rank unless ``fit(sync_bn=True)`` (GPU only) computes them over the global batch.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import os
import random
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from irlib.errors import IrlibInputError


def is_main_process() -> bool:
    """True unless this is a rank other than 0 of an initialised process group."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _map_tensors(obj: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """``fn`` applied to every tensor in nested lists, tuples and dicts."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    return obj


def _gather_rows(local: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """All ranks' rows in rank order (rank ``r`` holds ``sizes[r]`` rows), without autograd."""
    pad = max(sizes) - local.shape[0]
    as_bool = local.dtype == torch.bool
    x = local.to(torch.uint8) if as_bool else local
    x = torch.cat([x, x.new_zeros((pad, *x.shape[1:]))]) if pad else x.contiguous()
    parts = [torch.empty_like(x) for _ in sizes]
    dist.all_gather(parts, x)
    out = torch.cat([p[:s] for p, s in zip(parts, sizes)])
    return out.bool() if as_bool else out


class _GatherRows(torch.autograd.Function):
    """Autograd all-gather: backward sums the global gradient over ranks, keeps this rank's rows."""

    @staticmethod
    def forward(ctx: Any, local: torch.Tensor, sizes: list[int], rank: int) -> torch.Tensor:  # noqa: D102
        ctx.lo, ctx.hi = sum(sizes[:rank]), sum(sizes[:rank + 1])
        return _gather_rows(local, sizes)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # noqa: D102
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.lo:ctx.hi], None, None


class _Dispatch(nn.Module):
    """Lets DDP run any method of the model: ``forward(name, *args)`` calls ``module.<name>``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs) if name == "forward" else getattr(self.module, name)(*args, **kwargs)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the group: ``rank`` of ``world_size``, on ``device``."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sizes(self, n: int) -> list[int]:
        """Shard sizes of a global batch of ``n`` items (the first ``n % W`` ranks get one more)."""
        return [n // self.world_size + (r < n % self.world_size) for r in range(self.world_size)]

    def bounds(self, n: int) -> tuple[int, int]:
        """Rows ``[lo, hi)`` of a global batch of ``n`` items that this rank computes."""
        sizes = self.sizes(n)
        lo = sum(sizes[:self.rank])
        return lo, lo + sizes[self.rank]

    def check_batches(self, batch_size: int, sizes: list[int]) -> None:
        """Raise unless ``batch_size`` divides evenly and every batch gives each rank an item."""
        if batch_size % self.world_size:
            raise IrlibInputError(f"fit: batch_size {batch_size} (the global batch) is not divisible by the "
                                  f"world size {self.world_size}; choose a batch_size that is a multiple of it")
        small = [s for s in sizes if s < self.world_size]
        if small:
            raise IrlibInputError(f"fit: a batch of {small[0]} images cannot be split over {self.world_size} "
                                  "processes; use drop_last=True or fewer processes")

    def gather_batch(self, batch: Any, n: int) -> Any:
        """The global batch of ``n`` items from every rank's shard: tensors row-wise, lists joined."""
        sizes = self.sizes(n)
        if isinstance(batch, dict):
            return {k: self.gather_batch(v, n) for k, v in batch.items()}
        if isinstance(batch, torch.Tensor):
            return _gather_rows(batch, sizes)
        if isinstance(batch, (list, tuple)) and batch and all(isinstance(v, torch.Tensor) for v in batch):
            return type(batch)(self.gather_batch(v, n) for v in batch)
        if isinstance(batch, list):
            return [v for part in self.gather_object(batch) for v in part]
        return batch

    def gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def check_same(self, value: Any, what: str) -> None:
        """Raise on every rank when the ranks disagree on ``value``."""
        values = self.gather_object(value)
        if any(v != values[0] for v in values):
            raise IrlibInputError(f"fit: the processes disagree on {what}: {values} (by rank)")

    def sync_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank: each rank's last forward
        updated its own; DDP would send rank 0's at the next forward anyway."""
        for buf in model.buffers():
            dist.broadcast(buf.data, src=0)

    def seed(self, seed: int) -> None:
        """A seeded RNG stream per rank (torch, NumPy, random): dropout masks differ across shards."""
        s = int(np.random.SeedSequence([int(seed), 0x5EED, self.rank]).generate_state(1, np.uint64)[0] >> 1)
        torch.manual_seed(s)
        np.random.seed(s % 2 ** 32)
        random.seed(s)

    def wrap(self, model: nn.Module) -> "ShardedModel":
        """``model`` inside DDP, as the objective sees it."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel(_Dispatch(model), device_ids=ids)
        return ShardedModel(model, ddp, self)


class ShardedModel:
    """What the objective calls under DDP. ``sharded(x)`` and ``sharded.method(x, ...)`` take
    global-batch tensors (first dimension = the global batch), run this rank's rows through DDP
    and return the outputs (tensors, lists, tuples, dicts) with the rows of all ranks. Other
    attributes (and ``nn.Module``'s own methods) are the model's. Objectives must reach the model
    through these calls; calling a submodule directly would bypass DDP's gradient averaging."""

    def __init__(self, module: nn.Module, ddp: nn.Module, ctx: DistContext) -> None:
        self.__dict__.update(_module=module, _ddp=ddp, _ctx=ctx, _n=0)

    def set_batch(self, n: int) -> None:
        """The global batch size of the coming step."""
        self.__dict__["_n"] = n

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._run("forward", *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.__dict__["_module"], name)
        if inspect.ismethod(attr) and (name == "forward" or not hasattr(nn.Module, name)):
            return functools.partial(self._run, name)
        return attr

    def _run(self, name: str, *args: Any, **kwargs: Any) -> Any:
        ctx, n = self._ctx, self._n
        lo, hi = ctx.bounds(n)
        sizes = ctx.sizes(n)
        args, kwargs = _map_tensors((args, kwargs), lambda t: t[lo:hi] if t.ndim and t.shape[0] == n else t)
        out = self._ddp(name, *args, **kwargs)
        return _map_tensors(out, lambda t: _GatherRows.apply(t, sizes, ctx.rank)
                            if t.ndim and t.shape[0] == hi - lo else t)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def _destroy() -> None:
    """Destroy the process group that :func:`setup` created (at interpreter exit)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def setup(device: torch.device) -> DistContext | None:
    """The distributed context of this process, or ``None`` for a single process.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) or in an initialised group of more than one process:
    a CUDA ``device`` becomes ``cuda:LOCAL_RANK`` (made current); the default process group is
    initialised from the environment when it is not yet (``nccl`` on CUDA, ``gloo`` on CPU).
    """
    initialised = dist.is_available() and dist.is_initialized()
    world = dist.get_world_size() if initialised else _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return None
    if not dist.is_available():
        raise IrlibInputError(f"fit: WORLD_SIZE={world} but this torch build has no torch.distributed")
    if device.type == "cuda":
        rank = dist.get_rank() if initialised else _env_int("RANK", 0)
        device = torch.device("cuda", _env_int("LOCAL_RANK", rank % max(torch.cuda.device_count(), 1)))
        torch.cuda.set_device(device)
    if not initialised:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_destroy)
    elif device.type != "cuda" and dist.get_backend() == "nccl":
        raise IrlibInputError("fit: the process group uses nccl, which needs CUDA tensors; train on cuda or "
                              "initialise the group with gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), device)


def convert_sync_bn(model: nn.Module, ctx: DistContext) -> None:
    """Replace the model's BatchNorm layers by :class:`~torch.nn.SyncBatchNorm` in place (same
    parameters and buffers): statistics over the global batch. PyTorch's SyncBatchNorm needs GPUs."""
    if ctx.device.type != "cuda":
        raise IrlibInputError("fit: sync_bn=True needs CUDA devices (PyTorch's SyncBatchNorm has no CPU "
                              "implementation); train on cuda or leave sync_bn off")
    for name, child in model.named_children():
        setattr(model, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))


__all__ = ["DistContext", "ShardedModel", "convert_sync_bn", "is_main_process", "setup"]
