"""The FDEP fair re-run (issue 9): one seed, both arms (ACM baseline, ACM + FDEP) on NUAA-SIRST.

Recipe ``basicirstd`` for both arms, EfficientNet-Lite0 ImageNet as a STAND-IN for DINO, frozen-feature
cache in memory (crops aligned to 32 px for both arms), 100 epochs, one thread, last epoch scored.

    OMP_NUM_THREADS=1 python results/fdep_rerun/rerun.py --seed 0 --out /tmp/fdep_seed0
    python results/fdep_rerun/rerun.py --summarize results/fdep_rerun   # the table over every seed found

Writes ``<stem>_basicirstd_aligned_ep<E>_<arm>_seed<S>.{csv,json}``, the deployed host as ``.pt``
(``irlib.models.save_host`` with its normalisation) and the test maps under ``<out>/predictions``. Seed 42's files (written before this script, same call) carry no seed suffix.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import irlib.fdep.experiment as fx
from irlib.engine import experiment as engine_experiment
from irlib.engine.experiment import escape_epoch, weights_meta
from irlib.models import save_host


def summarize(folder: Path, epochs: int = 100) -> None:
    """Per-seed rows of both arms, mean ± std per arm and FDEP − baseline per seed, into ``folder``."""
    import pandas as pd

    from irlib.engine.tables import mean_std, paired_differences

    files = [f for f in sorted(folder.glob(f"*_basicirstd_aligned_ep{epochs}_*.csv")) if not f.stem.endswith("_history")]
    runs = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    # the epoch each run left SoftIoU's plateau (loss < 0.95; FDEP: the light branch, i.e. the deployed host)
    escapes, finals = {}, {}
    for f in files:
        for key, rows in json.loads(f.with_suffix(".json").read_text())["histories"].items():
            losses = [r.get("light", r["loss"]) for r in rows]
            escapes[key], finals[key] = escape_epoch(losses), losses[-1]
    keys = [f"{v}_seed{s}" for v, s in zip(runs["variant"], runs["seed"])]
    runs["escape_epoch"] = [escapes.get(k) for k in keys]       # None: still on the plateau at the end
    runs["final_host_loss"] = [finals.get(k) for k in keys]     # SoftIoU of the host (FDEP: light branch)
    runs = runs.sort_values(["variant", "seed"], kind="stable")
    metrics = ["IoU", "nIoU", "Pd", "Fa_1e-6", "HSE"]
    keep = ["variant", "seed", *metrics, "escape_epoch", "final_host_loss", "train_time_s", "epochs", "encoder", "encoder_is_stand_in",
            "crop_align"]
    engine_experiment.write_csv(folder / f"summary_ep{epochs}_runs.csv", runs[keep])
    table = pd.DataFrame([{"arm": v, "seeds": ", ".join(str(s) for s in g["seed"]),
                           **{m: mean_std(g[m], 3 if m == "HSE" else 1) for m in metrics}}
                          for v, g in runs.groupby("variant", sort=False)])
    diff = paired_differences(runs, "variant", "fdep", "baseline", metrics=metrics, keys=("seed",))
    engine_experiment.write_csv(folder / f"summary_ep{epochs}_arms.csv", table)
    engine_experiment.write_csv(folder / f"summary_ep{epochs}_differences.csv", diff)
    print(runs[keep[:9]].round(3).to_string(index=False), table.to_string(index=False),
          diff.round(3).to_string(index=False), sep="\n\n")
    print("mean ± std of the differences:", {c: mean_std(diff[c], 3 if c.startswith("HSE") else 1)
                                              for c in diff.columns if c != "seed"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summarize", type=Path, help="write the summary of the runs in this folder and stop")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--arms", nargs="+", default=["baseline", "fdep"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.summarize is not None:
        return summarize(args.summarize, args.epochs)
    if args.seed is None or args.out is None:
        parser.error("--seed and --out are required to train")
    torch.set_num_threads(args.threads)
    cfg = fx.make_config("demo", dataset="NUAA-SIRST", recipe="basicirstd", epochs=args.epochs, eval_every=50,
                         seeds=[args.seed], vfm_cache="memory", vfm_cache_gib=6, channels_last=True)
    meta = fx.provenance(cfg)
    data = fx.load_data(cfg)
    for arm in args.arms:
        run = fx.run_arm(cfg, arm, args.seed, data, progress=False, predictions_root=args.out / "predictions")
        stem = f"{fx.results_stem(cfg)}_basicirstd_aligned_ep{args.epochs}_{arm}_seed{args.seed}"
        engine_experiment.write_results(stem, [run], args.out, meta)
        save_host(run.deployed.cpu(), args.out / f"{stem}.pt",
                  meta=weights_meta(data.normalize, cfg.dataset, args.seed, meta, arm=arm, recipe="basicirstd",
                                    epochs=args.epochs))
        print({k: run.row.get(k) for k in ("variant", "seed", "IoU", "nIoU", "Pd", "Fa_1e-6", "HSE",
                                           "train_time_s")}, flush=True)


if __name__ == "__main__":
    main()
