"""``videovlm quickstart``: synthetic data -> tiny backbones -> tiny Video-LLaMA -> one answer
and the test accuracy per question type, with the video-blind control under it.

Steps (each prints a ``[i/6]`` line, then its own progress bar, then its time):

1. ``data``: the synthetic data set (``videovlm data synth``), 2000/200/200 videos;
2. ``vision``: the tiny convolutional vision tower. By default the checkpoint shipped with the
   package (``videovlm/assets/backbones/conv_tower``, built by ``recipes/backbones/conv_tower.yaml``),
   as a user starts from downloaded weights; ``--rebuild-backbones`` trains it with that recipe;
3. ``llm``: the tiny Llama, likewise (``videovlm/assets/backbones/llm``, ``recipes/backbones/llm.yaml``
   then ``llm_copy.yaml``);
4. ``videollama``: the tiny Video-LLaMA recipe, frozen vision tower and frozen LLM as in the paper
   (``recipes/videollama/tiny.yaml``: the question-aware Q-Former pretrained on answers without
   the LLM, then the projection and LoRA adapters through it), trained from cached tower features;
5. ``answer``: one question about one test video (``videovlm.qa.VideoQA``);
6. ``eval``: every test question, exact-match accuracy per type (``videovlm.eval``), and again
   with every question asked about another test video (the shuffled control).

Everything goes under ``--output`` (default ``./videovlm_quickstart``). A step whose output is
complete (its marker file, written last) is skipped, so a second run is fast and an
interrupted run resumes: training steps run with ``resume=true`` and continue from their
newest checkpoint. Once a step runs, the steps after it run again from scratch (a model is
never reused over backbones or data that changed under it). The recipes are read from the repository's ``recipes/`` folder with their
``data/synth`` and ``runs/`` paths moved under ``--output``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

import videovlm

DEFAULT_OUTPUT = Path("videovlm_quickstart")
MARKER = ".quickstart-complete"  # written last in a step's folder: the step is done
# Paths the recipes use relative to the repository root, and where the quickstart puts them.
DATA_PREFIX = "data/synth"
RUNS_PREFIX = "runs/"
STEP_COUNT = 6


def shipped_backbone(name: str) -> Path:
    """The folder of a backbone checkpoint shipped with the package (see its README.md)."""
    folder = Path(videovlm.__file__).resolve().parent / "assets" / "backbones" / SHIPPED_BACKBONES[name]
    if not (folder / "config.json").is_file():
        raise QuickstartError(f"{folder}: the shipped {name} checkpoint is missing (a partial install?); use --rebuild-backbones to train it")
    return folder


def quiet_transformers() -> None:
    """No per-load progress bars or load-report tables from transformers in the quickstart's output."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    # peft asks for the deprecated name when it wraps the LLM in LoRA (stage 2): not the user's to act on.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


class QuickstartError(RuntimeError):
    """A step cannot run (missing recipes folder, failed training); the message says which."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"working folder (default: ./{DEFAULT_OUTPUT})")
    parser.add_argument(
        "--recipes", type=Path, default=None, help="recipes folder (default: the repository's recipes/ next to the package)"
    )
    parser.add_argument("--train-videos", type=int, default=2000, help="synthetic training videos (default 2000)")
    parser.add_argument("--eval-videos", type=int, default=200, help="synthetic val and test videos each (default 200)")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="RECIPE:key=value",
        help="override a recipe value, e.g. videollama:stages.1.steps=100 or llm:stages.0.steps=50 (repeatable)",
    )
    parser.add_argument("--workers", type=int, default=2, help="processes for the data generation (default 2)")
    parser.add_argument(
        "--rebuild-backbones",
        action="store_true",
        help="train the tiny vision tower and LLM with recipes/backbones/{conv_tower,llm}.yaml instead of using the checkpoints shipped with the package",
    )


def default_recipes_dir() -> Path:
    return Path(videovlm.__file__).resolve().parent.parent / "recipes"


def relocate(value: Any, *, data_dir: Path, runs_dir: Path) -> Any:
    """A recipe's values with ``data/synth...`` and ``runs/...`` strings moved under the output."""
    if isinstance(value, dict):
        return {k: relocate(v, data_dir=data_dir, runs_dir=runs_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [relocate(v, data_dir=data_dir, runs_dir=runs_dir) for v in value]
    if isinstance(value, str):
        if value == DATA_PREFIX or value.startswith(DATA_PREFIX + "/"):
            return str(data_dir) + value[len(DATA_PREFIX) :]
        if value.startswith(RUNS_PREFIX):
            return str(runs_dir / value[len(RUNS_PREFIX) :])
    return value


def parse_overrides(items: list[str]) -> dict[str, list[str]]:
    """``RECIPE:key=value`` strings -> {recipe: [key=value, ...]}."""
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, override = item.partition(":")
        if not sep or "=" not in override or name not in TRAIN_STEPS:
            raise QuickstartError(f"--override {item!r}: expected RECIPE:key=value with RECIPE one of {', '.join(TRAIN_STEPS)}")
        out.setdefault(name, []).append(override)
    return out


# step name -> recipe file under recipes/ (the three training steps)
# A step of several recipes runs them in order (a later one continues an earlier one's output);
# --override STEP:key=value applies to each of them.
TRAIN_STEPS: dict[str, tuple[str, ...]] = {
    "vision": ("backbones/conv_tower.yaml",),
    "llm": ("backbones/llm.yaml", "backbones/llm_copy.yaml"),
    "videollama": ("videollama/tiny.yaml",),
}
# The backbone steps' shipped checkpoints (what those recipes built, see their README).
SHIPPED_BACKBONES = {"vision": "conv_tower", "llm": "llm"}
# The video-blind control of the eval step (videovlm.eval.controls): every test question is
# asked again about another test video's frames; the drop is the proof the model reads the video.
EVAL_CONTROL = "shuffled"
# The quickstart runs these recipes as they are (their defaults fit its ~10-minute budget on
# 2 cores); --override RECIPE:key=value changes one value.


class Quickstart:
    def __init__(self, args: argparse.Namespace):
        self.output = args.output.resolve()
        self.recipes = (args.recipes or default_recipes_dir()).resolve()
        self.data_dir = self.output / "data"
        self.runs_dir = self.output / "runs"
        self.args = args
        self.overrides = parse_overrides(args.override)
        self.step_index = 0
        self.seconds: dict[str, float] = {}  # step -> seconds it took in this run (0: reused)
        self.stale = False  # a step ran in this run: the steps after it must run again

    def announce(self, name: str, text: str) -> None:
        self.step_index += 1
        print(f"[{self.step_index}/{STEP_COUNT}] {name}: {text}", flush=True)

    def run_step(self, name: str, text: str, folder: Path, marker: Path, work: Callable[[], Any], *, source: str = "recipe") -> None:
        """Run ``work`` unless its marker (written last) says it finished before, from the same
        source, after every step it depends on. Once a step runs, every later step is stale: its
        ``folder`` (the quickstart's own, under ``--output``) is emptied and it runs again, so a
        model is never reused over backbones or data that changed under it."""
        self.announce(name, text)
        done = marker.is_file() and json.loads(marker.read_text()).get("source", "recipe") == source
        if done and not self.stale:
            print(f"      done before, reusing {marker.parent}", flush=True)
            self.seconds[name] = 0.0
            return
        if folder.exists() and (self.stale or marker.is_file()):
            shutil.rmtree(folder)  # built before a step it depends on ran again, or the other way: start clean
        self.stale = True
        started = time.monotonic()
        work()
        seconds = time.monotonic() - started
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"step": name, "seconds": round(seconds, 1), "source": source}) + "\n")
        self.seconds[name] = seconds
        print(f"      finished in {seconds:.0f} s", flush=True)

    def timed(self, name: str, text: str, work: Callable[[], Any]) -> None:
        """A step that always runs (no marker)."""
        self.announce(name, text)
        started = time.monotonic()
        work()
        self.seconds[name] = time.monotonic() - started

    # -- steps --------------------------------------------------------------------------
    def make_data(self) -> None:
        from videovlm.data.synthetic import generate

        n_eval = self.args.eval_videos
        # A folder without the marker is a run that stopped midway: start it again (about a minute).
        generate(
            self.data_dir,
            train=self.args.train_videos,
            val=n_eval,
            test=n_eval,
            workers=self.args.workers,
            overwrite=True,
            progress=True,
        )

    def train(self, name: str) -> Path:
        """Run the step's recipes in order (resuming each) and return the final folder of the last one's last stage."""
        finals = [self.train_recipe(name, self.recipes / recipe, part) for part, recipe in enumerate(TRAIN_STEPS[name])]
        return finals[-1]

    def train_recipe(self, name: str, recipe: Path, part: int) -> Path:
        from videovlm.train.config import ConfigError, apply_overrides, load_yaml, validate
        from videovlm.train.engine import Trainer

        if not recipe.is_file():
            raise QuickstartError(
                f"{recipe}: recipe not found; the quickstart reads the repository's recipes/ folder "
                "(install with `pip install -e .` from a checkout, or pass --recipes)"
            )
        data = relocate(load_yaml(recipe), data_dir=self.data_dir, runs_dir=self.runs_dir)
        data = apply_overrides(data, [*self.overrides.get(name, []), "resume=true"])
        try:
            config = validate(data, source=str(recipe))
        except ConfigError as error:
            raise QuickstartError(f"{name}: {error}") from error
        # The exact recipe this step runs, for `videovlm train` by hand and for the feature cache.
        ran = self.output / "recipes" / (f"{name}.yaml" if part == 0 else f"{name}.{part + 1}.yaml")
        ran.parent.mkdir(parents=True, exist_ok=True)
        ran.write_text(f"# videovlm train {ran}\n# {recipe} as the quickstart ran it (paths under {self.output})\n" + yaml.safe_dump(data, sort_keys=False))
        if data.get("features") == "cached":
            self.cache_features(ran)
        results = Trainer(config).run()
        return results[-1].final_dir

    def cache_features(self, recipe: Path) -> None:
        """Run the frozen vision tower once over every frame the recipe's first stage samples
        (train and val videos); later stages keep the tower frozen, so they read the same cache."""
        from videovlm.train.feature_cache_cli import cache_recipe_features

        for split in ("train", "val"):
            directory, _, reports = cache_recipe_features(recipe, split=split, progress=True)
            computed = sum(r.computed for r in reports)
            reused = sum(r.reused for r in reports)
            print(f"      {split} features: {computed} frames computed, {reused} reused -> {directory}", flush=True)

    def final_dir(self, name: str) -> Path:
        from videovlm.train.config import load_yaml

        data = relocate(load_yaml(self.recipes / TRAIN_STEPS[name][-1]), data_dir=self.data_dir, runs_dir=self.runs_dir)
        return Path(data["output_dir"]) / data["stages"][-1]["name"] / "final"

    def answer_one(self, model_dir: Path) -> None:
        from videovlm.data.formats import read_qa_json
        from videovlm.qa import VideoQA

        record = next(r for r in read_qa_json(self.data_dir / "test" / "qa.json") if r.type == "direction")
        vqa = VideoQA.from_pretrained(model_dir)
        answer = vqa.qa(record.video, record.question)
        print(f"      video:    {record.video}", flush=True)
        print(f"      question: {record.question}", flush=True)
        print(f"      answer:   {answer}   (truth: {record.answer})", flush=True)

    def evaluate(self, model_dir: Path) -> dict:
        """Every test question with its video, and again under the shuffled control (each
        question asked about another test video): the drop shows the model reads the video."""
        from videovlm.eval.controls import DEFAULT_CONTROL_SEED, control_section
        from videovlm.eval.records import read_predictions_jsonl
        from videovlm.eval.tasks import evaluate_qa
        from videovlm.qa import VideoQA
        from videovlm.qa.batch import write_predictions

        predictions = self.output / "eval" / "test_predictions.jsonl"
        vqa = VideoQA.from_pretrained(model_dir)
        summary = write_predictions(
            vqa, self.data_dir / "test" / "qa.json", predictions, task="qa", progress=True, control=EVAL_CONTROL, control_seed=DEFAULT_CONTROL_SEED
        )
        records = read_predictions_jsonl(predictions, require_answer=True)
        result = evaluate_qa(records)
        control = control_section(
            name=EVAL_CONTROL,
            real=records,
            control=read_predictions_jsonl(summary.control_output, require_answer=True),
            seed=DEFAULT_CONTROL_SEED,
            predictions=summary.control_output,
        )
        report = {"model": str(model_dir), "metrics": result.metrics, "per_type": result.per_type, "control": control}
        (self.output / "eval" / "test_accuracy.json").write_text(json.dumps(report, indent=1) + "\n")
        return report

    def run(self) -> int:
        quiet_transformers()
        started = time.monotonic()
        print(f"videovlm quickstart: working folder {self.output}", flush=True)
        self.run_step("data", f"synthetic videos -> {self.data_dir}", self.data_dir, self.data_dir / MARKER, self.make_data)
        for name, text in (
            ("vision", "the tiny convolutional vision tower"),
            ("llm", "the tiny Llama (text, grounded chat, copying)"),
        ):
            self.backbone_step(name, text)
        final = self.final_dir("videollama")
        text = "tiny Video-LLaMA: stage 1 the Q-Former on answers (no LLM), stage 2 instructions (tower and LLM frozen, LLM LoRA trained)"
        self.run_step("videollama", f"{text} -> {final}", final.parent.parent, final.parent.parent / MARKER, lambda: self.train("videollama"))
        model_dir = self.final_dir("videollama")
        self.timed("answer", "one question about one test video", lambda: self.answer_one(model_dir))
        eval_dir = self.output / "eval"
        report_path, marker = eval_dir / "test_accuracy.json", eval_dir / MARKER
        if marker.is_file() and (not report_path.is_file() or not _is_current_eval(json.loads(report_path.read_text()), model_dir)):
            marker.unlink()  # the finished evaluation is of another model (the recipe changed), or has no control: evaluate again
        text = f"every test question, exact match per type, and the {EVAL_CONTROL} control"
        self.run_step("eval", text, eval_dir, marker, lambda: self.evaluate(model_dir))
        print_accuracy(json.loads(report_path.read_text()))
        steps = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in self.seconds.items())
        print(f"time: {steps}; total {time.monotonic() - started:.0f} s", flush=True)
        return 0

    def backbone_step(self, name: str, text: str) -> None:
        """The shipped checkpoint copied in place, or (``--rebuild-backbones``) its recipe trained."""
        final = self.final_dir(name)
        step_dir = final.parent.parent
        source = "recipe" if self.args.rebuild_backbones else "shipped"
        marker = step_dir / MARKER
        if source == "shipped":
            shipped = shipped_backbone(name)
            self.run_step(name, f"{text}, shipped with the package: {shipped} -> {final}", step_dir, marker, lambda: shutil.copytree(shipped, final), source=source)
        else:
            self.run_step(name, f"{text}: {' then '.join(str(self.recipes / r) for r in TRAIN_STEPS[name])} -> {final}", step_dir, marker, lambda: self.train(name), source=source)


def _is_current_eval(report: dict, model_dir: Path) -> bool:
    return report.get("model") == str(model_dir) and bool(report.get("control"))


def print_accuracy(report: dict) -> None:
    from videovlm.data.synthetic import TEMPORAL_QUESTION_TYPES

    print("\ntest accuracy per question type (exact match):")
    print(f"  {'type':<10} {'accuracy':>8}  {'correct':>7} / total")
    for name, row in report["per_type"].items():
        kind = " (temporal)" if name in TEMPORAL_QUESTION_TYPES else ""
        print(f"  {name:<10} {100 * row['accuracy']:7.1f}%  {row['correct']:>7} / {row['total']}{kind}")
    for key in ("accuracy/static", "accuracy/temporal", "accuracy"):
        if key in report["metrics"]:
            label = key.split("/")[-1] if "/" in key else "overall"
            print(f"  {label:<10} {100 * report['metrics'][key]:7.1f}%")
    if report.get("control"):
        print_control_row(report["control"])
    print(f"model: {report['model']}")


def print_control_row(control: dict) -> None:
    """The video-blind control under the table: overall accuracy when every question is asked
    about another test video, and the drop from the real video (per static / temporal too)."""
    pooled = control["pooled"]
    overall = pooled["overall"]
    groups = "; ".join(
        f"{name} {100 * pooled[name]['control']:.1f}%, drop {100 * pooled[name]['drop']:.1f}" for name in ("static", "temporal") if name in pooled
    )
    print(f"  {control['name']:<10} {100 * overall['control']:7.1f}%  {overall['control_correct']:>7} / {overall['total']}"
          f"  drop {100 * overall['drop']:.1f} points from the real video ({groups})")
    seed = f" (seed {control['seed']})" if control.get("seed") is not None else ""
    print(f"  {control['name']} control: {control['description']}{seed}")


def run(args: argparse.Namespace) -> int:
    try:
        return Quickstart(args).run()
    except QuickstartError as error:
        print(f"videovlm quickstart: {error}", file=sys.stderr)
        return 2
