"""The ``irlib`` console script (declared in pyproject.toml): ``irlib predict ...``.

Only argument parsing lives here; the work is :func:`irlib.predict.predict_images`. Torch is
imported when a command runs, so ``irlib --help`` is instant. Bad input
(:class:`~irlib.errors.IrlibInputError`) ends with one ``irlib predict: error: ...`` line on
stderr and exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Sequence

from irlib.errors import IrlibInputError

PREDICT_EPILOG = """\
outputs in OUT: prob/<name>.png|.npy (+ predictions.json), mask/<name>.png,
overlay/<name>.png, targets.csv (image,target_id,centroid_row,centroid_col,area_px,peak_score).
Rules: docs/predict.md. Example:
  irlib predict data/my_images -w host.pt -o preds/
  irlib predict 'scans/*.tif' -w runs/acm/best.pt --host acm --normalize NUAA-SIRST -o preds/
"""


def _host_kwargs(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"base_width\": 8}'")
    return value


def _tile_size(text: str) -> int | None:
    value = int(text)
    return None if value == 0 else value


def build_parser() -> argparse.ArgumentParser:
    """The ``irlib`` argument parser with its ``predict`` subcommand."""
    parser = argparse.ArgumentParser(prog="irlib", description="irlib command-line tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p = sub.add_parser("predict", help="detect small targets in image files with a trained host",
                       description="Run a trained SIRST host on image files at native resolution;\n"
                                   "write probability maps, binary masks, overlays and one CSV of targets.",
                       epilog=PREDICT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image folder, quoted glob pattern or image file (PNG/JPG/BMP/TIFF, any mode)")
    p.add_argument("-w", "--weights", required=True,
                   help="save_host file, bare state_dict, or irlib.engine.fit last.pt/best.pt")
    p.add_argument("-o", "--out", required=True, help="output folder (new or empty, unless --overwrite)")
    p.add_argument("--host", help="registered host name (needed for fit checkpoints and bare state_dicts)")
    p.add_argument("--host-kwargs", type=_host_kwargs, default=None, metavar="JSON",
                   help="host constructor arguments as a JSON object, e.g. '{\"base_width\": 8}'")
    p.add_argument("--normalize", metavar="NAME|MEAN,STD",
                   help="input normalisation: a dataset with published constants (NUAA-SIRST, NUDT-SIRST, "
                        "IRSTD-1K) or 'mean,std' in [0, 1] units; required when the weights file "
                        "does not state it, overrides it (with a warning) when it does")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="mask = probability > threshold, strictly inside (0, 1) (default 0.5)")
    p.add_argument("--format", choices=["png", "npy"], default="png",
                   help="probability maps as 8-bit PNG (round(255 p)) or float32 NPY (default png)")
    p.add_argument("--tile-size", type=_tile_size, default=1024, metavar="PX",
                   help="images with a side above PX are tiled with windows of at most PX (multiple of 32; "
                        "0: never tile; default 1024)")
    p.add_argument("--tile-overlap", type=int, default=128, metavar="PX",
                   help="context added on each side of a tile's core, multiple of 32 (default 128)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty output folder, replacing files of the same name")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run_predict(args: argparse.Namespace) -> int:
    """Run ``irlib predict`` with parsed arguments; print a one-line summary."""
    from irlib.predict import predict_images

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        summary = predict_images(args.inputs, args.weights, args.out, host=args.host,
                                 host_kwargs=args.host_kwargs, normalize=args.normalize, threshold=args.threshold,
                                 fmt=args.format, tile_size=args.tile_size, tile_overlap=args.tile_overlap,
                                 device=args.device, overwrite=args.overwrite, progress=not args.no_progress)
    for w in caught:
        print(f"irlib predict: warning: {w.message}", file=sys.stderr)
    norm = summary.normalize
    print(f"{len(summary.names)} images, {len(summary.targets)} targets -> {summary.out_dir} "
          f"(normalisation mean={norm['mean']}, std={norm['std']} from {norm['source']})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``irlib`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "predict":
            return run_predict(args)
    except IrlibInputError as exc:
        print(f"irlib {args.command}: error: {exc}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
