"""``fit``: the training loop of every irlib method, driven by a :class:`Recipe`.

The recipe names the optimiser, parameter groups, epoch-based schedule, batch rules, gradient
clipping, mixed precision and loss (:mod:`irlib.engine.recipes`); ``fit`` adds the run's
machinery: checkpoints with exact resume, a NaN stop, epoch hooks, a monitoring set and a
validation set whose best epoch is reported separately from the last one.

Determinism: the epoch's sample order is a function of ``(seed, epoch)``; the DataLoader gets
its own seeded generator and seeds its workers; every checkpoint stores the RNG states, the
optimiser and scheduler states and the position (epoch, step in epoch). A run killed after a
checkpoint and resumed with ``resume=True`` therefore ends with exactly the weights of an
uninterrupted run on CPU, when data randomness comes from the main process's RNGs
(``num_workers=0``) or is keyed per item like :class:`irlib.data.torchdata.SirstTorchDataset`
(which the loop tells the epoch through ``set_epoch``). Hooks that keep state of their own must
restore it themselves on resume.

Under ``torchrun`` the same call trains with DistributedDataParallel, the global batch being the
recipe's ``batch_size`` and the loss that of the global batch (:mod:`irlib.engine.distributed`);
rank 0 evaluates and writes.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, Sized

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from irlib.engine import distributed
from irlib.engine.checkpoint import (capture_rng, load_checkpoint, load_trainable_state, restore_rng,
                                     save_checkpoint, trainable_state)
from irlib.engine.history import History
from irlib.engine.init import apply_head_prior
from irlib.engine.normalize import Normalize
from irlib.engine.objective import Objective, SupervisedObjective, recipe_loss
from irlib.engine.recipes import Recipe, get_recipe
from irlib.engine.schedule import build_optimizer, build_scheduler
from irlib.errors import IrlibInputError
from irlib.repro import seed_everything

CHECKPOINT_NAME = "last.pt"
BEST_NAME = "best.pt"
EvalFn = Callable[[nn.Module, Any], dict[str, float]]


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss became NaN or infinite."""


@dataclass
class EpochContext:
    """What an epoch hook sees. At ``on_epoch_end`` ``row`` is the epoch's History row (before it
    is appended): a hook may add columns to it."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    epoch: int                      # 0-based
    epochs: int
    history: History
    row: dict[str, Any] = field(default_factory=dict)
    stop: bool = False              # a hook sets it at on_epoch_end to end training after this epoch


class Hook:
    """Base of epoch hooks (label evolution, outer-loop updates, logging); override what you need."""

    def on_epoch_start(self, ctx: EpochContext) -> None:
        pass

    def on_epoch_end(self, ctx: EpochContext) -> None:
        pass


class PrintEvery(Hook):
    """Print the epoch's row (loss, lr, time, scores) every ``every`` epochs: a log for
    background runs without a progress bar."""

    def __init__(self, every: int = 10) -> None:
        self.every = max(int(every), 1)

    def on_epoch_end(self, ctx: EpochContext) -> None:
        if not distributed.is_main_process():
            return
        if (ctx.epoch + 1) % self.every == 0 or ctx.epoch + 1 == ctx.epochs or any(k.startswith("eval_") for k in ctx.row):
            text = ", ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in ctx.row.items())
            print(text, flush=True)


class StopAfterEscape(Hook):
    """End training ``extra`` epochs after the epoch loss first falls below ``level``: the
    seed-sensitivity runs only need the epoch at which a run leaves its initial plateau."""

    def __init__(self, level: float = 0.95, extra: int = 0, skip: int = 0) -> None:
        self.level, self.extra, self.skip = level, int(extra), int(skip)  # skip: warm-up epochs
        self.escaped_at: int | None = None

    def on_epoch_end(self, ctx: EpochContext) -> None:
        loss = ctx.row.get("loss")
        if self.escaped_at is None and ctx.epoch >= self.skip and loss is not None and loss < self.level:
            self.escaped_at = ctx.epoch + 1
        if self.escaped_at is not None and ctx.epoch + 1 >= self.escaped_at + self.extra:
            ctx.stop = True


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


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, drop_last: bool,
                  skip_singleton: bool) -> list[list[int]]:
    """The batches of ``epoch``: the seeded order cut into ``batch_size`` chunks; the last
    incomplete one dropped (``drop_last``), or skipped when it holds one image (``skip_singleton``)."""
    order = epoch_order(n, seed, epoch)
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if batches and len(batches[-1]) < batch_size and (drop_last or (skip_singleton and len(batches[-1]) == 1)):
        batches.pop()
    return batches


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


def _recipe_for(recipe: Recipe | str | None, overrides: dict[str, Any]) -> Recipe:
    if "scheduler" in overrides:  # the old name of ``schedule``
        sched = overrides.pop("scheduler")
        overrides["schedule"] = "constant" if sched is None else sched
    return get_recipe(recipe, **overrides)


class _Checkpointer:
    """Writes ``last.pt`` (+ ``history.json``) and ``best.pt`` atomically into ``directory``.
    Distributed (``dist``): every rank's RNG states are stored (``rng_ranks``), rank 0 writes."""

    def __init__(self, directory: str | Path | None, fingerprint: dict[str, Any], seed: int,
                 dist: distributed.DistContext | None = None) -> None:
        self.dir = Path(directory) if directory is not None else None
        self.fingerprint, self.seed, self.dist = fingerprint, seed, dist

    @property
    def last(self) -> Path | None:
        return self.dir / CHECKPOINT_NAME if self.dir is not None else None

    def save(self, model: nn.Module, optimizer: torch.optim.Optimizer, sched: Any, pos: _Position,
             history: History, write_history: bool = False) -> None:
        if self.dir is None:
            return
        rng, ranks = capture_rng(), {}
        if self.dist is not None:
            ranks = {"rng_ranks": self.dist.gather_object(rng)}
            if not self.dist.is_main:
                return
        save_checkpoint(self.last, {
            "model": trainable_state(model), "optimizer": optimizer.state_dict(),
            "scheduler": sched.state_dict(), "rng": rng, "position": asdict(pos),
            "history": history.to_dict(), "best_state": history.best_state, "fingerprint": self.fingerprint,
            **ranks})
        if write_history:
            history.to_json(self.dir / "history.json", params=self.fingerprint, seed=self.seed)

    def save_best(self, history: History) -> None:
        if self.dir is not None and history.best_state is not None and (self.dist is None or self.dist.is_main):
            save_checkpoint(self.dir / BEST_NAME, {"model": history.best_state, "epoch": history.best_epoch,
                                                   "metric": history.best_metric, "value": history.best_value,
                                                   "fingerprint": self.fingerprint})

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                sched: Any) -> tuple[_Position, History] | None:
        if self.last is None or not self.last.is_file():
            return None
        ckpt = load_checkpoint(self.last)
        if ckpt["fingerprint"] != self.fingerprint:
            raise IrlibInputError(f"resume: {self.last} was written with settings {ckpt['fingerprint']}, "
                                  f"this call has {self.fingerprint}; use another checkpoint_dir or resume=False")
        load_trainable_state(model, ckpt["model"], self.last)
        optimizer.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        restore_rng(ckpt["rng"] if self.dist is None else ckpt["rng_ranks"][self.dist.rank])
        history = History.from_dict(ckpt["history"])
        history.best_state = ckpt.get("best_state")
        return _Position(**ckpt["position"]), history


def _train_step(model: nn.Module | distributed.ShardedModel, objective: Objective, batch: Any,
                optimizer: torch.optim.Optimizer, params: list[nn.Parameter], recipe: Recipe, amp: bool,
                where: str) -> dict[str, float]:
    """One optimiser step; returns the logs. Raises :class:`NonFiniteLossError` on NaN/inf."""
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        loss_value, logs = objective(model, batch)
    logs = {"loss": float(loss_value.detach()), **logs}
    if not torch.isfinite(loss_value.detach()).all():
        terms = ", ".join(f"{k}={v:.6g}" for k, v in logs.items())
        raise NonFiniteLossError(
            f"training stopped: non-finite loss at {where}; loss terms: {terms}. Check the inputs and "
            f"normalisation for NaN/inf or a zero std, lower lr (now {optimizer.param_groups[0]['lr']:.3g}) "
            "or set grad_clip.")
    loss_value.backward()
    if recipe.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip)
    optimizer.step()
    return logs


def _score(model: nn.Module, eval_fn: EvalFn, dataset: Any) -> dict[str, float]:
    model.eval()
    try:
        return eval_fn(model, dataset)
    finally:
        model.train()


def fit(model: nn.Module, train_set: Dataset, recipe: Recipe | str | None = None, *, normalize: Normalize,
        objective: Objective | None = None, device: str | torch.device = "auto", seed: int = 0,
        checkpoint_dir: str | Path | None = None, checkpoint_every: int | None = None, resume: bool = False,
        eval_set: Any = None, eval_every: int = 1, eval_fn: EvalFn | None = None,
        val_set: Any = None, val_metric: str = "IoU", hooks: Sequence[Hook] = (),
        progress: bool = True, num_workers: int = 0, max_steps: int | None = None,
        channels_last: bool = False, sync_bn: bool = False, **recipe_changes: Any) -> History:
    """Train ``model`` on ``train_set`` (items ``{"image", "mask", "name"[, "weight"]}``) with
    ``recipe`` and return its History.

    Args:
        recipe: a :class:`Recipe`, a recipe name (``"basicirstd"``...) or ``None`` (the plain
            ``Recipe()``: AdamW 5e-4, weight decay 1e-4, batch 8, constant lr, SoftIoU).
        recipe_changes: recipe fields to replace, e.g. ``epochs=10, lr=1e-3, batch_size=4``
            (``scheduler=`` is accepted as the old name of ``schedule``).
        normalize: host-input normalisation (used by the default objective and evaluation).
        objective: ``objective(model, batch) -> (loss, logs)``; default
            ``SupervisedObjective(recipe loss, normalize)``. Told ``set_epoch`` when it has it.
        device: ``"auto"`` (cuda when available), ``"cpu"``, ``"cuda:0"``...
        seed: seeds everything (sample order, init of anything created inside, workers).
        checkpoint_dir: where ``last.pt`` (and ``history.json``, ``best.pt``) are written,
            atomically, at the end of every epoch, every ``checkpoint_every`` steps and when
            ``max_steps`` stops the run.
        resume: continue from ``checkpoint_dir/last.pt`` when it exists.
        eval_set, eval_every, eval_fn: a monitoring set (e.g. the test split: never used to
            choose anything) scored every ``eval_every`` epochs and after the last one with
            ``eval_fn(model, set)`` (default :func:`irlib.engine.evaluate.evaluate_model`);
            columns ``eval_*``.
        val_set, val_metric: a validation set (disjoint from the test set) scored on the same
            epochs; columns ``val_*``. The epoch with the highest ``val_<val_metric>`` is
            reported as ``history.best_epoch`` with its weights in ``history.best_state`` (and
            ``best.pt``), separately from the last epoch.
        hooks: :class:`Hook` objects called at the start and end of every epoch.
        max_steps: stop (with a checkpoint) after this many optimiser steps in total.
        channels_last: keep the model's weights in channels-last memory order (about 1.2x
            faster convolutions on CPU here; the same arithmetic up to float rounding).
        sync_bn: under ``torchrun`` (more than one process), replace the model's BatchNorm layers
            by SyncBatchNorm (statistics over the global batch; CUDA only). Ignored in one process.

    Distributed: launched by ``torchrun --nproc_per_node N`` the call trains with DDP on
    ``cuda:LOCAL_RANK`` (nccl) or the CPU (gloo); ``batch_size`` is the global batch (it must be
    divisible by N), each rank loads its shard and the loss is that of the global batch
    (:mod:`irlib.engine.distributed`). Rank 0 evaluates ``eval_set`` / ``val_set`` (the others
    wait for its scores), writes checkpoints and history and shows progress; every rank returns
    rank 0's History. ``resume`` needs ``checkpoint_dir`` on a file system all ranks see.

    Raises:
        NonFiniteLossError: the loss became NaN/inf; the message names epoch, step and loss terms.
    """
    recipe = _recipe_for(recipe, recipe_changes)
    n = len(train_set) if isinstance(train_set, Sized) else 0
    if n == 0:
        raise IrlibInputError("fit: train_set is empty")
    device = resolve_device(device)
    dctx = distributed.setup(device)
    if dctx is not None:
        device = dctx.device
    amp = recipe.amp and device.type == "cuda"
    seed_everything(seed)
    model.to(device).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if recipe.head_prior is not None:
        apply_head_prior(model, recipe.head_prior)
    if dctx is not None and sync_bn:
        distributed.convert_sync_bn(model, dctx)
    if objective is None:
        objective = SupervisedObjective(recipe_loss(recipe), normalize)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise IrlibInputError("fit: the model has no parameter with requires_grad=True")
    optimizer = build_optimizer(model, recipe)
    bs = min(recipe.batch_size, n)
    first_batches = epoch_batches(n, bs, seed, 0, recipe.drop_last, recipe.skip_singleton_batch)
    steps_per_epoch = len(first_batches)
    if steps_per_epoch == 0:
        raise IrlibInputError(f"fit: {n} training images give no batch of {bs} with drop_last")
    if dctx is not None:
        dctx.check_batches(bs, [len(b) for b in first_batches])
    sched = build_scheduler(optimizer, recipe, steps_per_epoch)
    fingerprint = {"n": n, "batch_size": bs, "steps_per_epoch": steps_per_epoch, "seed": seed,
                   "recipe": recipe.to_dict()}
    if dctx is not None:
        fingerprint["world_size"] = dctx.world_size
    if eval_fn is None and (eval_set is not None or val_set is not None):
        from irlib.engine.evaluate import evaluate_model

        def eval_fn(m: nn.Module, ds: Any) -> dict[str, float]:
            return evaluate_model(m, ds, normalize=normalize, device=device).metrics

    ckpt = _Checkpointer(checkpoint_dir, fingerprint, seed, dctx)
    history, pos = History(), _Position()
    restored = ckpt.restore(model, optimizer, sched) if resume else None
    if restored is not None:
        pos, history = restored
    if dctx is not None:
        if resume:
            dctx.check_same(restored is not None, f"whether {ckpt.last} exists (resume needs a shared checkpoint_dir)")
        if restored is None:
            dctx.seed(seed)
    if max_steps is not None and pos.global_step >= max_steps:
        history.global_step = pos.global_step
        return history
    runner = model if dctx is None else dctx.wrap(model)
    is_main = dctx is None or dctx.is_main

    for epoch in range(pos.epoch, recipe.epochs):
        t0 = time.perf_counter()
        ctx = EpochContext(model, optimizer, epoch, recipe.epochs, history)
        for hook in hooks:
            hook.on_epoch_start(ctx)
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        if hasattr(objective, "set_epoch"):
            objective.set_epoch(epoch)
        batches = epoch_batches(n, bs, seed, epoch, recipe.drop_last, recipe.skip_singleton_batch)
        todo, gen_seed = batches[pos.step_in_epoch:], _mix(seed, epoch, pos.step_in_epoch)
        if dctx is not None:  # this rank's shard of every global batch; its own loader seed
            todo = [b[slice(*dctx.bounds(len(b)))] for b in todo]
            gen_seed = _mix(seed, epoch, pos.step_in_epoch, dctx.rank)
        loader = DataLoader(train_set, batch_sampler=todo, num_workers=num_workers,
                            worker_init_fn=_seed_worker, pin_memory=device.type == "cuda",
                            generator=torch.Generator().manual_seed(gen_seed))
        bar = tqdm(total=len(batches), initial=pos.step_in_epoch, disable=not progress or not is_main,
                   desc=f"epoch {epoch + 1}/{recipe.epochs}", leave=False)
        for batch in loader:
            where = (f"epoch {epoch + 1}/{recipe.epochs}, step {pos.step_in_epoch + 1}/{len(batches)} "
                     f"(global step {pos.global_step + 1})")
            batch = to_device(batch, device)
            if dctx is not None:  # the global batch on every rank; the runner computes this rank's rows
                batch = dctx.gather_batch(batch, len(batches[pos.step_in_epoch]))
                runner.set_batch(len(batches[pos.step_in_epoch]))
            try:
                logs = _train_step(runner, objective, batch, optimizer, params, recipe, amp, where)
            except NonFiniteLossError:
                bar.close()
                raise
            sched.step()
            pos.step_in_epoch += 1
            pos.global_step += 1
            pos.count += 1
            for k, v in logs.items():
                pos.sums[k] = pos.sums.get(k, 0.0) + float(v)
            bar.update(1)
            bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()})
            if checkpoint_every and pos.global_step % checkpoint_every == 0:
                ckpt.save(model, optimizer, sched, pos, history)
            if max_steps is not None and pos.global_step >= max_steps:
                bar.close()
                if dctx is not None:
                    dctx.sync_buffers(model)
                history.global_step = pos.global_step
                ckpt.save(model, optimizer, sched, pos, history)
                return history
        bar.close()
        if dctx is not None:  # every rank evaluates, tracks and returns rank 0's model
            dctx.sync_buffers(model)
        row: dict[str, Any] = {"epoch": epoch + 1}
        row.update({k: v / max(pos.count, 1) for k, v in pos.sums.items()})
        row.update({"lr": optimizer.param_groups[0]["lr"], "steps": pos.count,
                    "time_s": round(time.perf_counter() - t0, 3)})
        if (epoch + 1) % max(eval_every, 1) == 0 or epoch + 1 == recipe.epochs:
            scores = _evaluate(model, eval_fn, eval_set, val_set, dctx)
            if "eval" in scores:
                row.update({f"eval_{k}": v for k, v in scores["eval"].items()})
            if "val" in scores:
                row.update({f"val_{k}": v for k, v in scores["val"].items()})
                if _track_best(history, model, epoch + 1, val_metric, scores["val"]):
                    ckpt.save_best(history)
        ctx.row = row
        for hook in hooks:
            hook.on_epoch_end(ctx)
        if dctx is not None:  # rank 0's row and stop decision on every rank
            row, ctx.stop = dctx.broadcast((row, ctx.stop))
        history.append(row)
        pos = _Position(epoch=epoch + 1, global_step=pos.global_step)
        history.global_step = pos.global_step
        history.completed = epoch + 1 == recipe.epochs
        if ctx.stop:
            history.completed, history.stopped_early = False, True
            ckpt.save(model, optimizer, sched, pos, history, write_history=True)
            return history
        ckpt.save(model, optimizer, sched, pos, history, write_history=True)
    history.completed = True
    return history


def _evaluate(model: nn.Module, eval_fn: EvalFn | None, eval_set: Any, val_set: Any,
              dctx: distributed.DistContext | None) -> dict[str, dict[str, float]]:
    """``{"eval": scores, "val": scores}`` for the sets given; distributed: scored on rank 0 and
    sent to every rank (an error there is raised on every rank)."""
    scores: dict[str, Any] = {}
    if dctx is None or dctx.is_main:
        try:
            if eval_set is not None:
                scores["eval"] = _score(model, eval_fn, eval_set)
            if val_set is not None:
                scores["val"] = _score(model, eval_fn, val_set)
        except Exception as exc:
            if dctx is None:
                raise
            dctx.broadcast({"error": f"{type(exc).__name__}: {exc}"})
            raise
    if dctx is not None:
        scores = dctx.broadcast(scores)
        if "error" in scores:
            raise RuntimeError(f"evaluation failed on rank 0: {scores['error']}")
    return scores


def _track_best(history: History, model: nn.Module, epoch: int, metric: str, scores: dict[str, float]) -> bool:
    """Record ``epoch`` as the best one when its ``metric`` beats the best so far; True if so."""
    if metric not in scores:
        raise IrlibInputError(f"val_metric {metric!r} is not among the validation scores {sorted(scores)}")
    value = float(scores[metric])
    if history.best_value is None or (math.isfinite(value) and value > history.best_value):
        history.best_epoch, history.best_value, history.best_metric = epoch, value, metric
        history.best_state = {k: v.detach().cpu().clone() for k, v in trainable_state(model).items()}
        return True
    return False


__all__ = ["EpochContext", "Hook", "PrintEvery", "StopAfterEscape", "NonFiniteLossError", "epoch_batches", "epoch_order", "fit",
           "resolve_device", "to_device"]
