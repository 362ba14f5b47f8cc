"""The evaluation report: ``report.json``, a markdown table next to it, and a bar chart PNG.

A report is a plain JSON-serialisable dict built by `build_report`:

- ``task``, ``command`` (the argv that produced it), ``data``, ``predictions``, ``model``
  (paths or null);
- ``counts``: ``items`` scored and ``errors`` (items with no prediction, counted as wrong);
- ``metrics``: the task's headline numbers, name -> float;
- ``fraction_metrics``: the names in ``metrics`` that are fractions in [0, 1] (the table shows
  them in percent; the others, e.g. CIDEr-D or a median rank, are shown as they are);
- ``per_type``: question type -> {``accuracy``, ``correct``, ``total``, ``errors``} (qa);
- ``details``: anything else the task computed (confusion counts, per-granularity CHAIR...);
- ``control`` (qa with ``--control``, else null): the video-blind control
  (`videovlm.eval.controls.control_section`): ``name``, ``description``, ``seed``,
  ``predictions`` (the control pass's file), and ``per_type`` / ``pooled`` (static, temporal,
  overall) rows of {``real``, ``control``, ``drop`` (= real - control), counts}.

`write_report(report, path)` writes ``path`` (JSON), ``path.with_suffix(".md")`` and
``path.with_suffix(".png")`` (accuracy per question type when there are types, beside the
control's when there is one; otherwise the headline metrics).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from videovlm.paths import atomic_output, check_outputs, write_atomic


def build_report(
    *,
    task: str,
    command: Sequence[str],
    metrics: Mapping[str, float],
    items: int,
    errors: int,
    data: str | Path | None = None,
    predictions: str | Path | None = None,
    model: str | Path | None = None,
    per_type: Mapping[str, Mapping[str, float]] | None = None,
    details: Mapping[str, object] | None = None,
    non_fraction_metrics: Sequence[str] = (),
    control: Mapping[str, object] | None = None,
) -> dict:
    """Assemble a report dict (see the module doc); every metric not named in
    `non_fraction_metrics` is a fraction."""
    return {
        "task": task,
        "command": list(command),
        "data": None if data is None else str(data),
        "predictions": None if predictions is None else str(predictions),
        "model": None if model is None else str(model),
        "counts": {"items": items, "errors": errors},
        "metrics": {name: float(value) for name, value in metrics.items()},
        "fraction_metrics": [name for name in metrics if name not in non_fraction_metrics],
        "per_type": {name: dict(values) for name, values in (per_type or {}).items()},
        "details": dict(details or {}),
        "control": None if control is None else dict(control),
    }


def _cell(value: float, *, fraction: bool) -> str:
    return f"{100 * value:.2f}" if fraction else f"{value:.4f}"


def markdown_table(report: Mapping) -> str:
    """Headline metrics (fractions shown as percent) and, if any, accuracy per question type."""
    counts = report["counts"]
    lines = [
        f"## videovlm eval: {report['task']}",
        "",
        f"{counts['items']} items, {counts['errors']} errors (counted as wrong). "
        "Fractions are shown in percent.",
        "",
        "| metric | value |",
        "|---|---:|",
    ]
    fractions = set(report["fraction_metrics"])
    lines += [f"| {name} | {_cell(value, fraction=name in fractions)} |" for name, value in report["metrics"].items()]
    if report.get("per_type"):
        lines += ["", "| type | accuracy | correct | total | errors |", "|---|---:|---:|---:|---:|"]
        for name, row in report["per_type"].items():
            lines.append(
                f"| {name} | {_cell(row['accuracy'], fraction=True)} | {row['correct']} | {row['total']} | {row['errors']} |"
            )
    if report.get("control"):
        lines += control_table(report["control"])
    return "\n".join(lines) + "\n"


def control_table(control: Mapping) -> list[str]:
    """The markdown lines of the video-blind control: real, control and drop per type, then
    the pooled rows (in bold)."""
    seed = f" (seed {control['seed']})" if control.get("seed") is not None else ""
    lines = [
        "",
        f"### video-blind control: {control['name']}{seed}",
        "",
        f"{control['description'].capitalize()}. Accuracy in percent; drop = real - control, in points"
        + (f"; the control's answers: {control['predictions']}." if control.get("predictions") else "."),
        "",
        "| type | real | control | drop | total |",
        "|---|---:|---:|---:|---:|",
    ]
    rows = [(name, row) for name, row in control["per_type"].items()]
    rows += [(f"**{name}**", row) for name, row in control["pooled"].items()]
    for name, row in rows:
        cells = " | ".join(_cell(row[key], fraction=True) for key in ("real", "control", "drop"))
        lines.append(f"| {name} | {cells} | {row['total']} |")
    return lines


def bar_chart(report: Mapping, path: str | Path) -> None:
    """PNG bar chart: accuracy per question type (with the control's beside it, when the
    report has one), or the headline metrics that are fractions."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    if report.get("per_type"):
        values = {name: row["accuracy"] for name, row in report["per_type"].items()}
        title = f"{report['task']}: accuracy per question type"
        if report.get("control"):
            title += f", real video vs {report['control']['name']} control"
    else:
        values = {name: report["metrics"][name] for name in report["fraction_metrics"]}
        title = f"{report['task']}: metrics"
    control = report.get("control") if report.get("per_type") else None
    figure, axes = plt.subplots(figsize=(max(4.0, (1.2 if control else 0.9) * len(values) + (3.5 if control else 1.5)), 3.5))
    try:
        if control:
            _control_bars(axes, values, control)
        else:
            bars = axes.bar(list(values), [100 * v for v in values.values()], color="tab:blue")
            axes.bar_label(bars, fmt="%.1f", fontsize=8)
        if report.get("per_type") and "accuracy" in report["metrics"]:
            overall = 100 * report["metrics"]["accuracy"]
            axes.axhline(overall, color="tab:red", linestyle="--", linewidth=1, label=f"overall {overall:.1f}")
            if control:
                blind = 100 * control["pooled"]["overall"]["control"]
                axes.axhline(blind, color="tab:gray", linestyle=":", linewidth=1, label=f"control overall {blind:.1f}")
            # beside the plot with a control: inside it would cover a bar pair
            axes.legend(fontsize=8, **({"loc": "upper left", "bbox_to_anchor": (1.0, 1.0)} if control else {"loc": "lower right"}))
        axes.set_ylim(0, 105)
        axes.set_ylabel("%")
        axes.set_title(title)
        axes.tick_params(axis="x", labelrotation=30)
        figure.tight_layout()
        # fixed metadata so the same report gives the same file
        with atomic_output(path, "wb") as handle:
            figure.savefig(handle, format="png", dpi=100, metadata={"Software": None})
    finally:
        plt.close(figure)


def _control_bars(axes, values: Mapping[str, float], control: Mapping) -> None:
    """Per type: the real accuracy and, beside it, the control's (the gap is the drop)."""
    positions = range(len(values))
    width = 0.4
    real = axes.bar([p - width / 2 for p in positions], [100 * v for v in values.values()], width, color="tab:blue", label="real video")
    blind = axes.bar(
        [p + width / 2 for p in positions],
        [100 * control["per_type"][name]["control"] for name in values],
        width,
        color="tab:gray",
        label=f"control: {control['name']}",
    )
    for bars in (real, blind):
        axes.bar_label(bars, fmt="%.1f", fontsize=7)
    axes.set_xticks(list(positions), list(values))


def write_report(report: Mapping, path: str | Path) -> tuple[Path, Path, Path]:
    """Write the JSON report, the markdown table and the chart (each atomically); return the
    three paths. ``OutputPathError`` when one of them is the report's own ``data`` or
    ``predictions`` file or lies inside its ``model`` folder."""
    path = Path(path)
    if path.suffix.lower() in (".md", ".png"):
        raise ValueError(f"report path {path} must not end in .md or .png: those files are written next to it")
    json_path, markdown_path, chart_path = path, path.with_suffix(".md"), path.with_suffix(".png")
    check_outputs(
        {"the report": json_path, "the markdown report": markdown_path, "the chart": chart_path},
        files={"its data": report.get("data"), "its predictions": report.get("predictions")},
        folders={"its model": report.get("model")},
    )
    write_atomic(json_path, json.dumps(report, indent=2, sort_keys=False) + "\n")
    write_atomic(markdown_path, markdown_table(report))
    bar_chart(report, chart_path)
    return json_path, markdown_path, chart_path
