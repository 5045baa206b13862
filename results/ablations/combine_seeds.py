"""Ablation studies whose seeds ran in separate processes, joined into one table per study.

The `demo` studies ran seed 0 (``demo/<study>.csv``); some ran again with other seeds
(notebook 06 with ``seeds: [1]``, results in ``demo/seed<s>/``). For every study with such runs this
writes ``demo/<study>_seeds<a>-<b>.csv`` (all runs, ``irlib.engine.study.combine_study_tables``
refuses mixed studies, profiles or a run twice), ``..._effects.csv`` (each variant minus the base,
paired by seed: mean and sample std over seeds) and ``..._seeds<a>-<b>.png``.

    python results/ablations/combine_seeds.py
"""

from __future__ import annotations

import json
from pathlib import Path

from irlib.engine.experiment import write_csv
from irlib.engine.study import combine_study_tables, effect_sizes, plot_study
from irlib.viz import save_figure

DEMO = Path(__file__).resolve().parent / "demo"


def main() -> None:
    extra = sorted(DEMO.glob("seed*/*.csv"))
    for study in sorted({p.stem for p in extra if not p.stem.endswith("_effects")}):
        table = combine_study_tables([DEMO / f"{study}.csv", *[p for p in extra if p.stem == study]])
        seeds = sorted(set(table["seed"]))
        stem = f"{study}_seeds{'-'.join(map(str, seeds))}"
        write_csv(DEMO / f"{stem}.csv", table)
        effects = effect_sizes(table)
        write_csv(DEMO / f"{stem}_effects.csv", effects)
        title = json.loads((DEMO / f"{study}.json").read_text())["metadata"]["params"]["title"]  # encoder, protocol
        save_figure(plot_study(table, title), DEMO / f"{stem}.png")
        cols = ["variant", "seeds", "IoU Δ", "IoU Δ std", "Pd Δ", "Fa_1e-6 Δ"]
        print(stem, effects[cols].round(1).to_string(index=False), sep="\n")


if __name__ == "__main__":
    main()
