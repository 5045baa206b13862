"""Recognising the three folder layouts of SIRST datasets and turning a split name into names.

Layouts (every one has ``images/`` and ``masks/`` side by side):

* ``"nuaa"``: the official NUAA-SIRST repository; split files ``idx_427/{train,val,trainval,
  test}.txt`` (also the older ``idx_320/``); masks ``masks/<name>_pixels0.png``.
* ``"dnanet"``: the DNANet / NUDT-SIRST layout; split files ``50_50/{train,test}.txt``; masks
  named like the images.
* ``"basicirstd"``: the BasicIRSTD layout; split files ``img_idx/{train,test}_<NAME>.txt`` in the
  dataset folder ``<NAME>/``; masks named like the images. ``root`` may be ``<NAME>/`` itself or
  its parent when the parent holds exactly one dataset folder.

Mask naming is detected from the files, independently of the split folders: masks are
``<name>_pixels0.<ext>`` when ``masks/`` holds any file named that way, else ``<name>.<ext>``.

Split selection (``split`` argument of :class:`~irlib.data.SirstDataset`):

* ``"train"``, ``"test"``, ``"val"``, ``"trainval"``: the split of the layout's own split folder.
  When a folder holds several split folders the layout is chosen in the order ``img_idx``
  (BasicIRSTD 50:50, what published benchmarks report) > ``50_50`` > ``idx_427`` > ``idx_320``;
  pass ``layout=`` to choose another one.
* ``"<folder>/<split>"``, e.g. ``"idx_427/test"``, ``"idx_320/val"``, ``"50_50/train"``,
  ``"img_idx/test"``: an explicit split folder, whatever the layout.
* ``"all"``: every image in ``images/``, in natural name order.
* a path to a ``.txt`` file: that split file.

Split files may have CRLF or LF endings, no final newline and blank lines; each line names one
image with or without its extension. Leading/trailing whitespace is stripped.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from irlib.data.io import IMAGE_EXTENSIONS
from irlib.errors import IrlibInputError

LAYOUTS = {"nuaa": "idx_427", "dnanet": "50_50", "basicirstd": "img_idx"}
_ALIASES = {"official": "nuaa", "nuaa-sirst": "nuaa", "sirst": "nuaa", "nudt": "dnanet",
            "nudt-sirst": "dnanet", "basic": "basicirstd", "basic-irstd": "basicirstd"}
_DETECT_ORDER = (("img_idx", "basicirstd"), ("50_50", "dnanet"), ("idx_427", "nuaa"),
                 ("idx_320", "nuaa"))
NUAA_MASK_SUFFIX = "_pixels0"

_LAYOUT_HELP = ("irlib reads three layouts: the official NUAA-SIRST repository (images/, "
                "masks/<name>_pixels0.png, idx_427/*.txt), the DNANet/NUDT-SIRST layout "
                "(images/, masks/, 50_50/{train,test}.txt) and the BasicIRSTD layout "
                "(<NAME>/images/, <NAME>/masks/, <NAME>/img_idx/{train,test}_<NAME>.txt); "
                "see data/README.md")


def natural_key(name: str) -> list:
    """Sort key that orders ``Misc_2`` before ``Misc_10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def split_stem(name: str) -> tuple[str, str | None]:
    """``("Misc_1", ".png")`` for ``"Misc_1.png"``; ``(name, None)`` without a known extension."""
    base, ext = os.path.splitext(name)
    if ext.lower() in IMAGE_EXTENSIONS:
        return base, ext
    return name, None


def index_folder(folder: Path) -> dict[str, list[str]]:
    """Map each image stem in ``folder`` to the file names that carry it (one directory scan)."""
    out: dict[str, list[str]] = {}
    with os.scandir(folder) as it:
        for entry in it:
            stem, ext = split_stem(entry.name)
            if ext is not None and entry.is_file():
                out.setdefault(stem, []).append(entry.name)
    return out


def read_split_file(path: Path) -> list[tuple[int, str]]:
    """``(line number, name)`` for every non-blank line of a split file (CRLF/LF, any ending)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise IrlibInputError(f"split file {path} does not exist; choose one of the splits "
                              f"listed by irlib.data.list_splits()") from None
    except UnicodeDecodeError:
        raise IrlibInputError(f"split file {path} is not UTF-8 text; it should list one image "
                              f"name per line") from None
    entries = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)]
    entries = [(n, name) for n, name in entries if name]
    if not entries:
        raise IrlibInputError(f"split file {path} is empty: it lists no image; write one image "
                              f"name per line, or choose another split")
    return entries


@dataclass
class DatasetFolder:
    """A dataset folder: where images, masks and split files are, and how masks are named."""

    root: Path
    layout: str | None
    mask_suffix: str
    split_dirs: dict[str, Path] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def image_dir(self) -> Path:
        return self.root / "images"

    @property
    def mask_dir(self) -> Path:
        return self.root / "masks"

    def split_file(self, split: str) -> Path | None:
        """The split file named by ``split`` (see module docstring); ``None`` for ``"all"``."""
        if split == "all":
            return None
        if split.endswith(".txt"):
            path = Path(split).expanduser()
            return path if path.is_absolute() else self.root / path
        if "/" in split:
            folder, part = split.rsplit("/", 1)
            return self._file_in(self.root / folder, part)
        if self.layout is None:
            raise IrlibInputError(f"{self.root} has images/ and masks/ but no split folder "
                                  f"(img_idx/, 50_50/, idx_427/); use split='all', a "
                                  f"'<folder>/<split>' name or the path of a split file")
        folder = LAYOUTS[self.layout]
        if self.layout == "nuaa" and folder not in self.split_dirs:
            folder = "idx_320"
        return self._file_in(self.root / folder, split)

    def _file_in(self, folder: Path, part: str) -> Path:
        if folder.name == "img_idx":
            preferred = folder / f"{part}_{self.name}.txt"
            if preferred.is_file():
                return preferred
            matches = sorted(folder.glob(f"{part}_*.txt")) if folder.is_dir() else []
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise IrlibInputError(f"{folder} holds several '{part}' split files "
                                      f"({', '.join(m.name for m in matches)}); pass the one "
                                      f"you want as split='<path>.txt'")
            return preferred
        return folder / f"{part}.txt"


def resolve_folder(root: str | os.PathLike, layout: str | None = None) -> DatasetFolder:
    """Find the dataset folder under ``root`` and recognise its layout (or check the forced one)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise IrlibInputError(f"dataset folder {root} does not exist; pass the folder that holds "
                              f"images/ and masks/ as root=, or set IRLIB_DATA")
    if not (root / "images").is_dir():
        candidates = sorted(p for p in root.iterdir() if (p / "images").is_dir())
        if len(candidates) == 1:
            root = candidates[0]
        elif len(candidates) > 1:
            raise IrlibInputError(f"{root} holds several datasets "
                                  f"({', '.join(p.name for p in candidates)}); pass one of them "
                                  f"as root, e.g. {candidates[0]}")
        else:
            raise IrlibInputError(f"unknown dataset layout in {root}: no images/ folder. "
                                  + _LAYOUT_HELP)
    if not (root / "masks").is_dir():
        raise IrlibInputError(f"unknown dataset layout in {root}: it has images/ but no masks/ "
                              f"folder. " + _LAYOUT_HELP)
    split_dirs = {p.name: p for p in sorted(root.iterdir())
                  if p.is_dir() and p.name not in ("images", "masks") and any(p.glob("*.txt"))}
    if layout is not None:
        key = _ALIASES.get(layout.lower(), layout.lower())
        if key not in LAYOUTS:
            raise IrlibInputError(f"unknown layout {layout!r}; choose one of {sorted(LAYOUTS)} "
                                  f"or None to detect it")
        wanted = ("idx_427", "idx_320") if key == "nuaa" else (LAYOUTS[key],)
        if not any(w in split_dirs for w in wanted):
            raise IrlibInputError(f"layout {key!r} needs a {wanted[0]}/ split folder in {root}, "
                                  f"which is missing; found {sorted(split_dirs) or 'none'}. "
                                  f"Pass layout=None to detect the layout")
        layout = key
    else:
        layout = next((kind for folder, kind in _DETECT_ORDER if folder in split_dirs), None)
    return DatasetFolder(root=root, layout=layout, mask_suffix=_detect_mask_suffix(root / "masks"),
                         split_dirs=split_dirs)


def _detect_mask_suffix(mask_dir: Path) -> str:
    with os.scandir(mask_dir) as it:
        for entry in it:
            stem, ext = split_stem(entry.name)
            if ext is not None and stem.endswith(NUAA_MASK_SUFFIX):
                return NUAA_MASK_SUFFIX
    return ""


def list_splits(root: str | os.PathLike) -> dict[str, int]:
    """Every split a dataset folder offers, as ``{"<folder>/<split>": number of images}``.

    Split names are those accepted by ``SirstDataset(root, split=...)``; ``"all"`` counts
    ``images/``.
    """
    folder = resolve_folder(root)
    out = {"all": len(index_folder(folder.image_dir))}
    for name, path in folder.split_dirs.items():
        for txt in sorted(path.glob("*.txt")):
            part = txt.stem
            if name == "img_idx" and "_" in part:
                part = part.split("_", 1)[0]
            try:
                out[f"{name}/{part}"] = len(read_split_file(txt))
            except IrlibInputError:
                out[f"{name}/{part}"] = 0
    return out
