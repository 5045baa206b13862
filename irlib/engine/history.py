"""``History``: one row per epoch (mean loss terms, learning rate, eval metrics), JSON/CSV out."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from typing import Any

from irlib.repro import atomic_write_bytes, run_metadata, write_json


@dataclass
class History:
    """Per-epoch records of a :func:`irlib.engine.fit` run.

    ``rows[i]`` has ``epoch`` (1-based), the epoch means of the objective's logs (``loss``, ...),
    ``lr`` (at the end of the epoch), ``steps``, ``time_s`` and, on evaluation epochs, the eval
    metrics prefixed ``eval_``. ``completed`` is False when the run stopped at ``max_steps``.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    completed: bool = False
    global_step: int = 0
    stopped_early: bool = False
    #: best-on-validation epoch (1-based) and its value of ``best_metric``; None without a val set
    best_epoch: int | None = None
    best_value: float | None = None
    best_metric: str | None = None
    #: the model's state at ``best_epoch`` (in memory only; ``best.pt`` holds it on disk)
    best_state: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(dict(row))

    def column(self, key: str) -> list[Any]:
        return [r.get(key) for r in self.rows]

    @property
    def losses(self) -> list[float]:
        return self.column("loss")

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "completed": self.completed, "global_step": self.global_step,
                "best_epoch": self.best_epoch, "best_value": self.best_value, "best_metric": self.best_metric,
                "stopped_early": self.stopped_early}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "History":
        return cls(rows=[dict(r) for r in d["rows"]], completed=bool(d["completed"]),
                   global_step=int(d["global_step"]), best_epoch=d.get("best_epoch"),
                   best_value=d.get("best_value"), best_metric=d.get("best_metric"),
                   stopped_early=bool(d.get("stopped_early", False)))

    def to_json(self, path: str | os.PathLike, params: dict[str, Any] | None = None,
                seed: int | None = None) -> None:
        """Write the history with :func:`irlib.repro.run_metadata` (atomic)."""
        write_json(path, {"history": self.to_dict(), "metadata": run_metadata(params or {}, seed)})

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "History":
        with open(path) as fh:
            return cls.from_dict(json.load(fh)["history"])

    def to_csv(self, path: str | os.PathLike) -> None:
        """One line per epoch, columns = union of the rows' keys (atomic)."""
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_bytes(path, buf.getvalue().encode())

    def to_dataframe(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows)
