"""Run logs: ``log.csv`` and ``log.jsonl`` rows of scalars per step, TensorBoard when installed."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # a torn last line from an interrupted run
    return rows


class RunLogger:
    """Appends ``{"step": s, **scalars}`` rows to ``log.jsonl`` and ``log.csv`` in ``run_dir``.

    ``resume_step``: rows logged after that step (by a run that died after its last checkpoint) are
    dropped, so a resumed run's log is the log of an uninterrupted run. The CSV gains columns as new
    scalar names appear (it is rewritten from the JSONL then).
    """

    def __init__(self, run_dir: str | Path, resume_step: int = 0, tensorboard: bool = True):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.jsonl, self.csv = self.dir / "log.jsonl", self.dir / "log.csv"
        self.rows = [r for r in _read_jsonl(self.jsonl) if r.get("step", 0) <= resume_step]
        self.columns = self._columns(self.rows)
        self._rewrite()
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(self.dir / "tensorboard"), purge_step=resume_step + 1)
            except ImportError:
                self.tb = None

    @staticmethod
    def _columns(rows: list[dict]) -> list[str]:
        cols = ["step"]
        for r in rows:
            cols += [k for k in r if k not in cols]
        return cols

    def _rewrite(self) -> None:
        tmp = self.jsonl.with_name(self.jsonl.name + ".partial")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
        tmp.replace(self.jsonl)
        tmp = self.csv.with_name(self.csv.name + ".partial")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.columns)
            w.writeheader()
            w.writerows(self.rows)
        tmp.replace(self.csv)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        row = {"step": int(step)}
        for k, v in scalars.items():
            v = float(v)
            row[k] = v if math.isfinite(v) else str(v)
        self.rows.append(row)
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
        if any(k not in self.columns for k in row):
            self.columns = self._columns(self.rows)
            self._rewrite()
        else:
            with open(self.csv, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.columns).writerow(row)
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, float(v), int(step))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


__all__ = ["RunLogger"]
