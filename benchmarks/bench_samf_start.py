"""How far CO-ISD's main branch starts from the light one: cosine similarity between the fused
and the plain host bottleneck at initialisation, for the default SAMF chain and for
``identity_init=True`` (the chain starts as the identity). Train-mode forward on random crops.

    python benchmarks/bench_samf_start.py [--hosts acm alcnet] [--encoder efficientnet_lite0] [--seeds 0 1 2]

Writes ``results/benchmarks/samf_start.csv`` (one row per host, encoder, start and seed) and a JSON
sidecar with run metadata.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from irlib.engine import Normalize  # noqa: E402
from irlib.fdep import CoISD  # noqa: E402
from irlib.models import create_model  # noqa: E402
from irlib.paths import results_root  # noqa: E402
from irlib.repro import atomic_write_bytes, run_metadata, write_json  # noqa: E402
from irlib.vfm import create_encoder  # noqa: E402


def start_cosine(host: str, encoder: str, identity_init: bool, seed: int, batch: int, size: int) -> dict[str, float]:
    """Whole-batch and mean per-image cosine between fused and plain bottleneck at init."""
    torch.manual_seed(seed)
    model = CoISD(create_model(host), create_encoder(encoder), identity_init=identity_init).train()
    raw = torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(seed))
    x = Normalize(0.4, 0.14)(raw)
    with torch.no_grad():
        plain = model.host.encode(x).bottleneck
        fused = model.samf(plain, model.vfm_features(raw))
    per_image = F.cosine_similarity(fused.flatten(1), plain.flatten(1), dim=1)
    return {"cos_batch": float(F.cosine_similarity(fused.flatten(), plain.flatten(), dim=0)),
            "cos_per_image": float(per_image.mean())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hosts", nargs="+", default=["acm", "alcnet"])
    p.add_argument("--encoder", default="efficientnet_lite0")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--out", default=None, help="CSV path (default results/benchmarks/samf_start.csv)")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = [{"host": h, "encoder": args.encoder, "start": "identity" if ident else "default", "seed": s,
             **start_cosine(h, args.encoder, ident, s, args.batch, args.size)}
            for h in args.hosts for ident in (False, True) for s in args.seeds]
    import pandas as pd

    table = pd.DataFrame(rows)
    print(table.groupby(["host", "start"])[["cos_batch", "cos_per_image"]].agg(["min", "max"]).round(3).to_string())
    out = Path(args.out) if args.out else results_root(None) / "benchmarks" / "samf_start.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, table.to_csv(index=False, float_format="%.5g").encode())
    write_json(out.with_suffix(".json"), {"rows": rows, "meta": run_metadata(vars(args))})
    print("wrote", out)


if __name__ == "__main__":
    main()
