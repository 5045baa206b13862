"""``fit``: the training loop (AdamW, optional schedule, checkpoints, exact resume, NaN stop).

Determinism: the epoch's sample order is a function of ``(seed, epoch)``; the DataLoader gets
its own seeded generator and seeds its workers; every checkpoint stores the RNG states, the
optimiser and scheduler states and the position (epoch, step in epoch). A run killed after a
checkpoint and resumed with ``resume=True`` therefore ends with exactly the weights of an
uninterrupted run on CPU, when data randomness comes from the main process's RNGs
(``num_workers=0``) or is keyed per item like :class:`irlib.data.torchdata.SirstTorchDataset`
(which the loop tells the epoch through ``set_epoch``).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sized

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from irlib.engine.checkpoint import (
    capture_rng,
    load_checkpoint,
    load_trainable_state,
    restore_rng,
    save_checkpoint,
    trainable_state,
)
from irlib.engine.history import History
from irlib.engine.normalize import Normalize
from irlib.engine.objective import Objective, SupervisedObjective
from irlib.engine.schedule import Schedule, build_scheduler
from irlib.errors import IrlibInputError
from irlib.repro import seed_everything

CHECKPOINT_NAME = "last.pt"
EvalFn = Callable[[nn.Module, Any], dict[str, float]]


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss became NaN or infinite."""


@dataclass
class _Position:
    epoch: int = 0            # epoch being run (0-based)
    step_in_epoch: int = 0    # optimiser steps already done in that epoch
    global_step: int = 0      # optimiser steps done in total
    sums: dict[str, float] = field(default_factory=dict)  # running sums of the epoch's logs
    count: int = 0


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is ``cuda`` when available, else ``cpu``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _mix(*ints: int) -> int:
    return int(np.random.SeedSequence([int(i) for i in ints]).generate_state(1, dtype=np.uint64)[0] >> 1)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The (seeded) order in which the samples are visited in ``epoch``."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(_mix(seed, epoch))).tolist()


def _seed_worker(worker_id: int) -> None:
    s = torch.initial_seed() % 2 ** 32
    np.random.seed(s)
    random.seed(s)


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def fit(model: nn.Module, train_set: Dataset, *, epochs: int, normalize: Normalize,
        batch_size: int = 8, lr: float = 5e-4, weight_decay: float = 1e-4,
        objective: Objective | None = None, loss: str | Callable = "softiou",
        scheduler: Schedule = None, min_lr_ratio: float = 0.0, device: str | torch.device = "auto",
        seed: int = 0, checkpoint_dir: str | Path | None = None, checkpoint_every: int | None = None,
        resume: bool = False, eval_set: Any = None, eval_every: int = 1, eval_fn: EvalFn | None = None,
        progress: bool = True, num_workers: int = 0, max_steps: int | None = None,
        grad_clip: float | None = None, drop_last: bool = True) -> History:
    """Train ``model`` on ``train_set`` (items ``{"image", "mask", "name"}``) and return its History.

    Args:
        epochs: number of passes over ``train_set``.
        normalize: host-input normalisation (used by the default objective and evaluation).
        batch_size: capped at ``len(train_set)``; the last incomplete batch is dropped when
            ``drop_last`` (BatchNorm dislikes tiny batches).
        lr, weight_decay: AdamW over the parameters with ``requires_grad``.
        objective: ``objective(model, batch) -> (loss, logs)``; default
            ``SupervisedObjective(build_loss(loss), normalize)``.
        loss: loss name (see :func:`irlib.engine.losses.build_loss`) or callable.
        scheduler: ``None``, ``"cosine"``, ``"poly"`` or ``(optimizer, total_steps) -> scheduler``;
            stepped once per optimiser step.
        device: ``"auto"`` (cuda when available), ``"cpu"``, ``"cuda:0"``...
        seed: seeds everything (sample order, init of anything created inside, workers).
        checkpoint_dir: where ``last.pt`` (and ``history.json``) are written, atomically, at the
            end of every epoch, every ``checkpoint_every`` steps and when ``max_steps`` stops
            the run.
        resume: continue from ``checkpoint_dir/last.pt`` when it exists.
        eval_set, eval_every, eval_fn: every ``eval_every`` epochs (and after the last one)
            ``eval_fn(model, eval_set)`` (default :func:`irlib.engine.evaluate.evaluate_model`)
            adds ``eval_*`` columns to the History.
        max_steps: stop (with a checkpoint) after this many optimiser steps in total.
        grad_clip: clip the gradient norm to this value.

    Raises:
        NonFiniteLossError: the loss became NaN/inf; the message names epoch, step and loss terms.
    """
    if epochs < 1 or batch_size < 1:
        raise IrlibInputError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    n = len(train_set) if isinstance(train_set, Sized) else 0
    if n == 0:
        raise IrlibInputError("fit: train_set is empty")
    device = resolve_device(device)
    seed_everything(seed)
    model.to(device).train()
    if objective is None:
        objective = SupervisedObjective(loss, normalize)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise IrlibInputError("fit: the model has no parameter with requires_grad=True")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    bs = min(batch_size, n)
    steps_per_epoch = n // bs if drop_last else math.ceil(n / bs)
    total_steps = epochs * steps_per_epoch
    sched = build_scheduler(scheduler, optimizer, total_steps, min_lr_ratio=min_lr_ratio)
    fingerprint = {"n": n, "batch_size": bs, "steps_per_epoch": steps_per_epoch, "seed": seed, "lr": lr,
                   "weight_decay": weight_decay, "drop_last": drop_last,
                   "scheduler": scheduler if isinstance(scheduler, str) or scheduler is None else "custom",
                   "epochs": epochs if scheduler is not None else None}
    if eval_set is not None and eval_fn is None:
        from irlib.engine.evaluate import evaluate_model

        def eval_fn(m: nn.Module, ds: Any) -> dict[str, float]:
            return evaluate_model(m, ds, normalize=normalize, device=device)

    history, pos = History(), _Position()
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None

    def checkpoint(write_history: bool = False) -> None:
        if ckpt_path is None:
            return
        save_checkpoint(ckpt_path, {
            "model": trainable_state(model), "optimizer": optimizer.state_dict(),
            "scheduler": sched.state_dict() if sched is not None else None, "rng": capture_rng(),
            "position": asdict(pos), "history": history.to_dict(), "fingerprint": fingerprint})
        if write_history:
            history.to_json(ckpt_path.parent / "history.json", params=fingerprint, seed=seed)

    if resume and ckpt_path is not None and ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path)
        if ckpt["fingerprint"] != fingerprint:
            raise IrlibInputError(f"resume: {ckpt_path} was written with settings {ckpt['fingerprint']}, "
                                  f"this call has {fingerprint}; use another checkpoint_dir or resume=False")
        load_trainable_state(model, ckpt["model"], ckpt_path)
        optimizer.load_state_dict(ckpt["optimizer"])
        if sched is not None:
            sched.load_state_dict(ckpt["scheduler"])
        restore_rng(ckpt["rng"])
        pos = _Position(**ckpt["position"])
        history = History.from_dict(ckpt["history"])

    if max_steps is not None and pos.global_step >= max_steps:
        history.global_step = pos.global_step
        return history
    for epoch in range(pos.epoch, epochs):
        t0 = time.perf_counter()
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        order = epoch_order(n, seed, epoch)
        batches = [order[i * bs:(i + 1) * bs] for i in range(steps_per_epoch)]
        loader = DataLoader(train_set, batch_sampler=batches[pos.step_in_epoch:], num_workers=num_workers,
                            worker_init_fn=_seed_worker, pin_memory=device.type == "cuda",
                            generator=torch.Generator().manual_seed(_mix(seed, epoch, pos.step_in_epoch)))
        bar = tqdm(total=steps_per_epoch, initial=pos.step_in_epoch, disable=not progress,
                   desc=f"epoch {epoch + 1}/{epochs}", leave=False)
        for batch in loader:
            batch = to_device(batch, device)
            optimizer.zero_grad(set_to_none=True)
            loss_value, logs = objective(model, batch)
            logs = {"loss": float(loss_value.detach()), **logs}
            if not torch.isfinite(loss_value.detach()).all():
                bar.close()
                terms = ", ".join(f"{k}={v:.6g}" for k, v in logs.items())
                raise NonFiniteLossError(
                    f"training stopped: non-finite loss at epoch {epoch + 1}/{epochs}, step "
                    f"{pos.step_in_epoch + 1}/{steps_per_epoch} (global step {pos.global_step + 1}); "
                    f"loss terms: {terms}. Check the inputs and normalisation for NaN/inf or a zero "
                    f"std, lower lr (now {optimizer.param_groups[0]['lr']:.3g}) or set grad_clip.")
            loss_value.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            if sched is not None:
                sched.step()
            pos.step_in_epoch += 1
            pos.global_step += 1
            pos.count += 1
            for k, v in logs.items():
                pos.sums[k] = pos.sums.get(k, 0.0) + float(v)
            bar.update(1)
            bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()})
            if checkpoint_every and pos.global_step % checkpoint_every == 0:
                checkpoint()
            if max_steps is not None and pos.global_step >= max_steps:
                bar.close()
                history.global_step = pos.global_step
                checkpoint()
                return history
        bar.close()
        row: dict[str, Any] = {"epoch": epoch + 1}
        row.update({k: v / max(pos.count, 1) for k, v in pos.sums.items()})
        row.update({"lr": optimizer.param_groups[0]["lr"], "steps": pos.count,
                    "time_s": round(time.perf_counter() - t0, 3)})
        if eval_set is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs):
            model.eval()
            metrics = eval_fn(model, eval_set)
            model.train()
            row.update({f"eval_{k}": v for k, v in metrics.items()})
        history.append(row)
        pos = _Position(epoch=epoch + 1, global_step=pos.global_step)
        history.global_step = pos.global_step
        history.completed = epoch + 1 == epochs
        checkpoint(write_history=True)
    history.completed = True
    return history
