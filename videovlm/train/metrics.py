"""Metrics: one JSON line per logged step, TensorBoard scalars and a loss-curve PNG per stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class MetricsLogger:
    """Writes ``metrics.jsonl`` (and TensorBoard events) for one stage; rank 0 only.

    On resume from step ``resume_step`` the lines a killed run wrote after its checkpoint
    are dropped first, so the file reads as one uninterrupted run.
    """

    def __init__(self, stage_dir: Path, *, enabled: bool, resume_step: int | None, tensorboard_dir: Path | None):
        self.enabled = enabled
        self.path = stage_dir / "metrics.jsonl"
        self._writer = None
        if not enabled:
            return
        stage_dir.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_metrics(self.path) if resume_step is not None and r.get("step", 0) <= resume_step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step hides events a killed run logged after the checkpoint we resume from.
            self._writer = SummaryWriter(str(tensorboard_dir), purge_step=(resume_step + 1) if resume_step else None)

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._writer.add_scalar(key, value, global_step=record["step"])

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_loss_curve(metrics_path: Path, png_path: Path, *, title: str) -> None:
    """Training loss per step (and the eval loss, when logged) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss")
    if evals:
        ax.scatter(*zip(*evals), color="tab:red", zorder=3, label="eval loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
