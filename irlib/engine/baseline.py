"""Train a host baseline under a named recipe and write its results: the reference runs that
every method result is compared against.

Command line (results into ``--out``; checkpoints, for ``--resume``, into ``--checkpoints``)::

    python -m irlib.engine.baseline --host acm --dataset NUAA-SIRST --recipe basicirstd --seed 42 \\
        --out results/baselines --eval-every 25 --threads 1 --save-weights

Writes ``<stem>.csv`` / ``<stem>.json`` (metrics of the last epoch, the per-epoch history, the
recipe and provenance) and, with ``--save-weights``, ``<stem>.pt`` (:func:`irlib.models.save_host`
format, loadable with :func:`irlib.models.load_host`). ``stem`` is
``<dataset>_<host>_<recipe>[_<deviations>]_seed<seed>``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Sequence

import torch

from irlib.engine.experiment import (DataSettings, RunResult, escape_epoch, load_data, provenance, run_training,
                                     write_results)
from irlib.engine.recipes import Recipe, get_recipe
from irlib.engine.trainer import PrintEvery
from irlib.models import count_params, create_model, save_host


def baseline_stem(dataset: str, host: str, recipe: Recipe, seed: int) -> str:
    dev = "".join(f"_{k}{v}" for k, v in (("prior", recipe.head_prior),
                                          ("bcewarm", recipe.warmup_loss_epochs if recipe.warmup_loss else None))
                  if v is not None)
    return f"{dataset}_{host}_{recipe.name}{dev}_seed{seed}".replace("/", "-")


def train_baseline(host: str, settings: DataSettings, recipe: Recipe, seed: int, out_dir: str | Path | None = None,
                   eval_every: int = 0, device: str = "auto", checkpoint_dir: str | Path | None = None,
                   resume: bool = False, save_weights: bool = False, progress: bool = True,
                   host_kwargs: dict[str, Any] | None = None, channels_last: bool = False) -> RunResult:
    """Train ``create_model(host)`` (initialised from ``seed``) with ``recipe`` on ``settings``'s
    data; score the last epoch on the test split; write the results when ``out_dir`` is given."""
    meta = provenance({"host": host, "host_kwargs": host_kwargs or {}, "data": vars(settings),
                       "eval_every": eval_every, "device": device,
                       "channels_last": channels_last}, recipe, seed)
    data = load_data(settings, recipe, seed)
    torch.manual_seed(seed)
    model = create_model(host, **(host_kwargs or {}))
    row = {"dataset": settings.dataset, "host": host, "params": count_params(model),
           "normalization": data.normalization}
    hooks = [] if progress else [PrintEvery(10)]
    result = run_training(model, data, recipe, seed=seed, eval_every=eval_every, device=device,
                          checkpoint_dir=checkpoint_dir, resume=resume, progress=progress, row=row, hooks=hooks,
                          channels_last=channels_last)
    result.row["escape_epoch"] = escape_epoch(result.history.losses)
    if out_dir is not None:
        stem = baseline_stem(settings.dataset, host, recipe, seed)
        meta["data_label"] = data.label
        write_results(stem, [result], out_dir, meta)
        result.history.to_csv(Path(out_dir) / f"{stem}_history.csv")
        if save_weights:
            save_host(result.deployed.cpu(), Path(out_dir) / f"{stem}.pt")
    return result


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="acm")
    p.add_argument("--dataset", default="NUAA-SIRST")
    p.add_argument("--root", default=None, help="data root (default $IRLIB_DATA)")
    p.add_argument("--recipe", default="basicirstd")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--head-prior", type=float, default=None, help="named deviation: initial foreground prob.")
    p.add_argument("--bce-warmup", type=int, default=None, help="named deviation: BCE for the first N epochs")
    p.add_argument("--seed", type=int, nargs="+", default=[0])
    p.add_argument("--val-fraction", type=float, default=0.0)
    p.add_argument("--out", default="results/baselines")
    p.add_argument("--checkpoints", default=None, help="checkpoint folder (enables --resume)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--eval-every", type=int, default=0, help="score the test split every N epochs (monitoring)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--device", default="auto")
    p.add_argument("--save-weights", action="store_true")
    p.add_argument("--channels-last", action="store_true", help="faster CPU convolutions (same arithmetic)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    changes = {"epochs": args.epochs, "head_prior": args.head_prior}
    if args.bce_warmup:
        changes.update(warmup_loss="bce", warmup_loss_epochs=args.bce_warmup)
    recipe = get_recipe(args.recipe, **changes)
    settings = DataSettings(dataset=args.dataset, root=args.root or os.environ.get("IRLIB_DATA"),
                            val_fraction=args.val_fraction)
    for seed in args.seed:
        ckpt = Path(args.checkpoints) / baseline_stem(args.dataset, args.host, recipe, seed) if args.checkpoints else None
        r = train_baseline(args.host, settings, recipe, seed, args.out, args.eval_every, args.device, ckpt,
                           args.resume, args.save_weights, progress=False, channels_last=args.channels_last)
        print({k: r.row[k] for k in ("host", "recipe", "seed", "IoU", "nIoU", "Pd", "Fa_1e-6", "final_loss",
                                     "escape_epoch", "train_time_s")}, flush=True)


if __name__ == "__main__":
    main()
