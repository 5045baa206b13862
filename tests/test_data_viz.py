"""Dataset-tour figures render, and notebook 00 keeps its papermill contract (no outputs)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from irlib.data import SyntheticSirst, dataset_stats  # noqa: E402
from irlib.data.viz import (evenly_spaced, sample_grid, summary_table,  # noqa: E402
                            target_histograms)
from irlib.paths import REPO_ROOT  # noqa: E402
from irlib.viz import crop_around, save_figure  # noqa: E402


def test_figures_and_table(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    syn = SyntheticSirst(3, size=64, seed=0)
    fig = sample_grid(syn, [0, 1, 2], zoom=16, ncols=2)
    save_figure(fig, tmp_path / "grid.png")
    stats = [dataset_stats(syn), dataset_stats(SyntheticSirst(2, size=48, seed=1))]
    fig2 = target_histograms(stats)
    save_figure(fig2, tmp_path / "hist.png")
    plt.close("all")
    assert (tmp_path / "grid.png").stat().st_size > 1000
    assert (tmp_path / "hist.png").read_bytes()[:4] == b"\x89PNG"
    table = summary_table(stats, "test")
    assert list(table["images"]) == [3, 2] and set(table["split"]) == {"test"}
    assert evenly_spaced(10, 3) == [0, 4, 9] and evenly_spaced(3, None) == [0, 1, 2]
    assert crop_around(syn[0].image, (0, 0), 8).shape == (8, 8)


def test_notebook_00_contract() -> None:
    nb = json.loads((REPO_ROOT / "notebooks" / "00_datasets.ipynb").read_text())
    cells = nb["cells"]
    assert cells[0]["cell_type"] == "markdown"
    params = cells[1]
    assert params["cell_type"] == "code" and "parameters" in params["metadata"]["tags"]
    src = "".join(params["source"])
    for line in ('dataset = "synthetic"', "root = None", 'split = "test"', "profile = None",
                 "results_dir = None"):
        assert line in src
    resolve = "".join(cells[2]["source"])
    assert "profile = irlib.paths.resolve_profile(profile)" in resolve
    assert 'out = irlib.paths.results_root(results_dir) / "datasets"' in resolve
    for cell in cells:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_outline_legend_names_the_outline_colours():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from irlib.viz import MASK_COLOR, PRED_COLOR, outline_legend

    fig, _ = plt.subplots()
    legend = outline_legend(fig, marks=True, threshold=0.5)
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["real mask (outline)", "target (circled)", "prediction > 0.5 (outline)"]
    colors = [tuple(h.get_color()) for h in legend.legend_handles]
    assert colors[0] == MASK_COLOR and colors[2] == PRED_COLOR
    plt.close(fig)
