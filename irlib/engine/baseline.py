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

from irlib.engine.evaluate import Evaluation, evaluate_model
from irlib.engine.distributed import is_main_process
from irlib.engine.experiment import (DataSettings, RunResult, escape_epoch, load_data, open_splits, provenance,
                                     recipe_normalize, run_training, warmup_epochs, weights_meta,
                                     write_results)
from irlib.engine.recipes import RECIPES, Recipe, get_recipe
from irlib.engine.trainer import PrintEvery, StopAfterEscape
from irlib.models import count_params, create_model, load_host, save_host


def baseline_stem(dataset: str, host: str, recipe: Recipe, seed: int) -> str:
    """``<dataset>_<host>_<recipe>[_ep<epochs>][_prior<p>][_bcewarm<k>]_seed<seed>``; the epochs
    appear when they differ from the named recipe's, so short runs never overwrite full ones."""
    named = RECIPES.get(recipe.name)
    parts = [("ep", recipe.epochs if named is None or named.epochs != recipe.epochs else None),
             ("prior", recipe.head_prior),
             ("bcewarm", recipe.warmup_loss_epochs if recipe.warmup_loss else None)]
    dev = "".join(f"_{k}{v}" for k, v in parts if v is not None)
    return f"{dataset}_{host}_{recipe.name}{dev}_seed{seed}".replace("/", "-")


def train_baseline(host: str, settings: DataSettings, recipe: Recipe, seed: int, out_dir: str | Path | None = None,
                   eval_every: int = 0, device: str = "auto", checkpoint_dir: str | Path | None = None,
                   resume: bool = False, save_weights: bool = False, progress: bool = True,
                   host_kwargs: dict[str, Any] | None = None, channels_last: bool = False,
                   stop_after_escape: int | None = None) -> RunResult:
    """Train ``create_model(host)`` (initialised from ``seed``) with ``recipe`` on ``settings``'s
    data; score the last epoch on the test split; write the results when ``out_dir`` is given."""
    meta = provenance({"host": host, "host_kwargs": host_kwargs or {}, "data": vars(settings),
                       "eval_every": eval_every, "device": device, "stop_after_escape": stop_after_escape,
                       "channels_last": channels_last}, recipe, seed)
    data = load_data(settings, recipe, seed)
    torch.manual_seed(seed)
    model = create_model(host, **(host_kwargs or {}))
    row = {"dataset": settings.dataset, "host": host, "params": count_params(model),
           "normalization": data.normalization}
    hooks: list = [] if progress else [PrintEvery(10)]
    if stop_after_escape is not None:
        hooks.append(StopAfterEscape(extra=stop_after_escape, skip=warmup_epochs(recipe)))
    result = run_training(model, data, recipe, seed=seed, eval_every=eval_every, device=device,
                          checkpoint_dir=checkpoint_dir, resume=resume, progress=progress, row=row, hooks=hooks,
                          channels_last=channels_last)
    result.row["escape_epoch"] = escape_epoch(result.history.losses, skip=warmup_epochs(recipe))
    result.row["epochs_run"] = len(result.history.rows)
    if out_dir is not None and is_main_process():
        stem = baseline_stem(settings.dataset, host, recipe, seed)
        meta["data_label"] = data.label
        write_results(stem, [result], out_dir, meta)
        result.history.to_csv(Path(out_dir) / f"{stem}_history.csv")
        if save_weights:
            save_host(result.deployed.cpu(), Path(out_dir) / f"{stem}.pt",
                      meta=weights_meta(data.normalize, settings.dataset, seed, meta, recipe=recipe.name,
                                        epochs=recipe.epochs))
    return result


def write_predictions(weights: str | Path, settings: DataSettings, recipe: Recipe, out_dir: str | Path,
                      fmt: str = "png", device: str = "auto") -> Evaluation:
    """Score shipped weights (:func:`irlib.models.load_host` format) on ``settings``'s test split
    with ``recipe``'s normalisation and write the probability maps into ``out_dir`` in irlib's
    predictions format (8-bit PNG by default, small enough to commit): notebook 03 compares
    trained networks from such folders."""
    train, test = open_splits(settings)
    normalize, _ = recipe_normalize(recipe, settings.dataset, train)
    return evaluate_model(load_host(weights), test, normalize, device, sweep=True, out_dir=out_dir,
                          save_format=fmt)


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
    p.add_argument("--stop-after-escape", type=int, default=None, metavar="N",
                   help="seed-sensitivity runs: stop N epochs after the loss first falls below 0.95")
    p.add_argument("--channels-last", action="store_true", help="faster CPU convolutions (same arithmetic)")
    p.add_argument("--report", default=None, metavar="FOLDER",
                   help="train nothing: write the tables and figures of the runs in FOLDER into FOLDER")
    args = p.parse_args(argv)
    if args.report:
        for path in write_report(args.report).values():
            print(path)
        return
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
                           args.resume, args.save_weights, progress=False, channels_last=args.channels_last,
                           stop_after_escape=args.stop_after_escape)
        if is_main_process():
            print({k: r.row[k] for k in ("host", "recipe", "seed", "IoU", "nIoU", "Pd", "Fa_1e-6", "final_loss",
                                         "escape_epoch", "train_time_s")}, flush=True)



# ----------------------------------------------------------------------------- reports
def load_runs(folder: str | Path) -> list[dict[str, Any]]:
    """Every run written by :func:`train_baseline` in ``folder``: its results row plus
    ``losses`` (per epoch) and ``history`` (rows)."""
    import json

    runs = []
    for path in sorted(Path(folder).glob("*.json")):
        data = json.loads(path.read_text())
        if "results" not in data or "histories" not in data:
            continue
        for row, (key, rows) in zip(data["results"], data["histories"].items()):
            runs.append({**row, "file": path.name, "history": rows, "losses": [r["loss"] for r in rows]})
    return runs


def final_table(runs: Sequence[dict[str, Any]]) -> Any:
    """Last-epoch test metrics per run, next to BasicIRSTD's published run of the same host."""
    import pandas as pd

    from irlib.engine.reference import reference_log

    rows = []
    for r in runs:
        log = reference_log(r["dataset"], r["host"])
        rows.append({"dataset": r["dataset"], "host": r["host"], "recipe": r["recipe"], "deviations": r["deviations"],
                     "seed": r["seed"], "epochs": r["epochs"], "IoU": r["IoU"], "nIoU": r["nIoU"], "Pd": r["Pd"],
                     "Fa_1e-6": r["Fa_1e-6"], "HSE": r.get("HSE"), "final_loss": r["final_loss"],
                     "escape_epoch": r.get("escape_epoch"), "epochs_run": r.get("epochs_run", r["epochs"]),
                     "train_time_s": r["train_time_s"],
                     "published_IoU": log.IoU if log else None, "published_Pd": log.Pd if log else None,
                     "published_Fa_1e-6": log.Fa_1e6 if log else None})
    return pd.DataFrame(rows)


def metrics_at_epoch(runs: Sequence[dict[str, Any]], epoch: int) -> Any:
    """Test metrics of every run at ``epoch``: the monitoring evaluation of longer runs
    (``--eval-every``) or the last epoch of runs that ended there. Compares runs of different
    lengths at a common epoch (the schedules of the recipes here agree up to their first milestone)."""
    import pandas as pd

    rows = []
    for r in runs:
        if len(r["history"]) < epoch:
            continue
        h = r["history"][epoch - 1]
        if "eval_IoU" in h:
            metrics = {k: h[f"eval_{k}"] for k in ("IoU", "nIoU", "Pd", "Fa_1e-6")}
        elif len(r["history"]) == epoch:
            metrics = {k: r[k] for k in ("IoU", "nIoU", "Pd", "Fa_1e-6")}
        else:
            continue
        rows.append({"host": r["host"], "recipe": r["recipe"], "deviations": r["deviations"], "seed": r["seed"],
                     "epoch": epoch, **metrics, "loss": h["loss"], "escape_epoch": r.get("escape_epoch")})
    return pd.DataFrame(rows)


def loss_table(runs: Sequence[dict[str, Any]]) -> Any:
    """Training loss (10-epoch means, as BasicIRSTD prints) at epochs 50..400 next to the
    published log, one row per run and epoch."""
    import pandas as pd

    from irlib.engine.reference import compare_losses, reference_log

    rows = []
    for r in runs:
        log = reference_log(r["dataset"], r["host"])
        if log is None:
            continue
        for c in compare_losses(r["losses"], log):
            rows.append({"host": r["host"], "recipe": r["recipe"], "deviations": r["deviations"], "seed": r["seed"], **c})
    return pd.DataFrame(rows)


def plot_runs(runs: Sequence[dict[str, Any]], dataset: str, host: str) -> Any:
    """Loss curves of the runs of ``host`` on ``dataset`` against BasicIRSTD's published log."""
    from irlib.engine.reference import plot_against_reference, reference_log

    log = reference_log(dataset, host)
    if log is None:
        raise ValueError(f"no published BasicIRSTD log for {host} on {dataset}")
    chosen = [r for r in runs if r["dataset"] == dataset and r["host"] == host]
    curves = [(f"irlib {r['recipe']} seed {r['seed']}" + ("" if r["deviations"] == "none" else f" ({r['deviations']})")
               + f": IoU {r['IoU']:.1f} after {r['epochs']} ep", r["losses"]) for r in chosen]
    return plot_against_reference(curves, log, f"{host.upper()} on {dataset}, BasicIRSTD protocol "
                                                f"(published IoU {log.IoU:.2f}); CPU runs with irlib")


def write_report(folder: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Tables and figures of the runs in ``folder`` (into ``out_dir``, default ``folder``):
    ``final_table.csv`` (last-epoch metrics next to the published ones), ``loss_vs_published.csv``
    (10-epoch mean losses at epochs 50..400) and ``<dataset>_<host>_loss_vs_published.png``."""
    from irlib.engine.reference import reference_log
    from irlib.repro import atomic_write_bytes
    from irlib.viz import save_figure

    runs = load_runs(folder)
    if not runs:
        raise FileNotFoundError(f"no baseline runs (<stem>.json written by train_baseline) in {folder}")
    out = Path(out_dir or folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"final": out / "final_table.csv", "losses": out / "loss_vs_published.csv"}
    atomic_write_bytes(paths["final"], final_table(runs).to_csv(index=False, float_format="%.6g").encode())
    atomic_write_bytes(paths["losses"], loss_table(runs).to_csv(index=False, float_format="%.6g").encode())
    for ds, host in sorted({(r["dataset"], r["host"]) for r in runs}):
        if reference_log(ds, host) is None:
            continue
        paths[f"{ds}_{host}"] = out / f"{ds}_{host}_loss_vs_published.png"
        save_figure(plot_runs(runs, ds, host), paths[f"{ds}_{host}"])
    return paths


if __name__ == "__main__":
    main()
