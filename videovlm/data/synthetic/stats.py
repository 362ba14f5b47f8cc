"""Counts, answer balance and ceilings of a generated data set, computed from its files.

- chance ceiling: accuracy of always answering the most frequent answer of the type.
- order-blind ceiling: the best accuracy from the unordered set of frames. A video and its
  reversal have the same set of frames and are equally likely (the scene sampler is symmetric
  under time reversal), so an order-blind model is right on an item with probability 1 where
  the reversed video has the same answer, and at best 1/2 where it differs.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from videovlm.data.synthetic.captions import CAPTION_TEMPLATES
from videovlm.data.synthetic.questions import QUESTION_TEMPLATES, answer_query, parse_question
from videovlm.data.synthetic.scene import SceneConfig, event_ranges, reverse_annotation
from videovlm.data.synthetic.vocabulary import ANSWER_VOCABULARY, COLOR_NAMES, QUESTION_TYPES, SHAPES, TEMPORAL_QUESTION_TYPES


def compute_stats(output_dir: str | Path, *, params: dict) -> dict:
    from videovlm.data.formats import read_annotations_jsonl, read_image_captions_json, read_instructions_json, read_qa_json, read_webvid_csv

    output_dir = Path(output_dir)
    splits = {}
    for split in ("train", "val", "test"):
        split_dir = output_dir / split
        annotations = {a.video_id: a for a in read_annotations_jsonl(split_dir / "annotations.jsonl", check_files=False)}
        reversed_annotations = {k: reverse_annotation(a) for k, a in annotations.items()}
        qa = read_qa_json(split_dir / "qa.json", check_files=False)
        per_type: dict[str, dict] = {}
        for kind in QUESTION_TYPES:
            items = [q for q in qa if q.type == kind]
            answers = Counter(q.answer for q in items)
            same_when_reversed = sum(answer_query(reversed_annotations[q.video_id], parse_question(q.question)) == q.answer for q in items)
            per_type[kind] = {
                "count": len(items),
                "answers": dict(sorted(answers.items())),
                "chance_ceiling": round(max(answers.values()) / len(items), 4) if items else None,
                "order_blind_ceiling": round((same_when_reversed + 0.5 * (len(items) - same_when_reversed)) / len(items), 4) if items else None,
            }
        splits[split] = {
            "videos": len(annotations),
            "captions": len(read_webvid_csv(split_dir / "captions.csv", check_files=False)),
            "qa": len(qa),
            "instructions": len(read_instructions_json(split_dir / "instructions.json", check_files=False)),
            "image_captions": len(read_image_captions_json(split_dir / "image_captions.json", check_files=False)),
            "objects_per_video": dict(sorted(Counter(len(a.objects) for a in annotations.values()).items())),
            "question_types": per_type,
        }
    train_dir = output_dir / "train"
    train_qa = read_qa_json(train_dir / "qa.json", check_files=False)
    examples = {
        "captions": [c.caption for c in read_webvid_csv(train_dir / "captions.csv", check_files=False)[:3]],
        "qa": {kind: next(([q.question, q.answer] for q in train_qa if q.type == kind), None) for kind in QUESTION_TYPES},
    }
    return {"params": params, "answer_vocabulary": list(ANSWER_VOCABULARY), "splits": splits, "examples": examples}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def render_card(stats: dict, *, seconds: float | None = None, cpu_seconds: float | None = None, workers: int | None = None) -> str:
    """The dataset card (markdown) of a generated data set, from ``stats.json``."""
    p = stats["params"]
    lines = _card_intro(p)
    if seconds is not None:
        lines += _card_timing(seconds, cpu_seconds, workers)
    lines += _card_videos(p)
    lines += _CARD_FILES
    lines += _card_question_types(stats)
    lines += _card_examples(stats)
    lines += _card_counts(stats)
    return "\n".join(lines)


def _card_intro(p: dict) -> list[str]:
    """Title, what the set is for and the command that regenerates it."""
    return [
        "# Synthetic temporal video-language data set",
        "",
        "Small synthetic videos whose temporal questions cannot be answered from an unordered bag of",
        "frames: a model only beats the order-blind ceiling below if its video encoder uses frame order.",
        "Everything in this card was written by `videovlm data synth` from the generated files.",
        "",
        "## Regenerate",
        "",
        "```",
        f"videovlm data synth OUTPUT --train {p['train']} --val {p['val']} --test {p['test']} --seed {p['seed']} --size {p['size']} --frames {p['frames']} --fps {p['fps']:g}",
        "```",
        "",
        "The same arguments give byte-identical text files and identical decoded frames (single-threaded",
        "x264); each video depends only on (seed, split, index), so the number of `--workers` does not",
        "matter and the splits never share a random stream.",
    ]


def _card_timing(seconds: float, cpu_seconds: float | None, workers: int | None) -> list[str]:
    cpu = f" ({cpu_seconds:.1f} s of CPU time over all processes)" if cpu_seconds is not None else ""
    return ["", f"Generation time of this set: {seconds:.1f} s wall-clock with {workers} worker process(es){cpu}."]


def _card_videos(p: dict) -> list[str]:
    """The ``## Videos`` section: frames, objects, motion, events and text templates."""
    scene = SceneConfig()
    appear_frames, change_frames = event_ranges(p["frames"])
    return [
        "",
        "## Videos",
        "",
        f"{p['size']}x{p['size']} px, {p['frames']} frames at {p['fps']:g} fps, h264 mp4. A light textured background and 1-3",
        f"objects; shape in {{{', '.join(SHAPES)}}}, colour in {{{', '.join(COLOR_NAMES)}}}, bounding box",
        f"{round(scene.min_size_frac * p['size'])}-{round(scene.max_size_frac * p['size'])} px.",
        "**Within a video every object has a different shape and every colour (including a colour after a",
        "change) belongs to one object**, so \"the square\" or \"the red object\" is unambiguous.",
        f"Each object moves left, right, up or down (travelling {round(scene.min_travel_frac * p['size'])}-{round(scene.max_travel_frac * p['size'])} px while visible) or",
        "stays still, and may appear late, disappear early or change colour once (probabilities "
        + ", ".join(f"{name} {prob:g}" for name, prob in zip(("none", "appear", "disappear", "change"), scene.event_probs)) + ";",
        f"in {scene.order_pair_prob:.0%} of the videos with 2-3 objects one object disappears early and another appears late, which",
        "gives order questions). Half of the scenes are then played backwards, so a video and its reversal are equally likely;",
        f"events happen at 0-based frames appear {appear_frames.start}-{appear_frames.stop - 1}, change {change_frames.start}-{change_frames.stop - 1}, disappear {p['frames'] - appear_frames.stop + 1}-{p['frames'] - appear_frames.start},",
        "away from the first and last frames so that an 8-frame uniform sample sees them. Objects never overlap.",
        "Captions narrate events in time order with "
        + f"{len(CAPTION_TEMPLATES)} sentence templates and verb paraphrases; questions have {min(len(t) for t in QUESTION_TEMPLATES.values())}-{max(len(t) for t in QUESTION_TEMPLATES.values())} paraphrases",
        "each; conversations have 1-3 turns mixing a description request and questions.",
    ]


_CARD_FILES = (
    "",
    "## Files per split (`OUTPUT/<split>/`)",
    "",
    "| file | format | content |",
    "|---|---|---|",
    "| `videos/<video_id>.mp4` | h264 | the videos |",
    "| `images/<image_id>.jpg` | JPEG | one frame per video, for image-text stages |",
    "| `captions.csv` | WebVid (`videoid,name,page_dir,duration` + `video`) | one caption per video |",
    "| `qa.json` | MSRVTT-QA / MSVD-QA (`video_id, video, question, answer, type`) | QA items |",
    "| `mcq.json` | MVBench (`video_id, video, question, candidates, answer, type`) | the QA items as 4-option multiple choice |",
    "| `instructions.json` | LLaVA / VideoChat (`id, video, conversations`) | 1-3 turn conversations |",
    "| `image_captions.json` | LLaVA-CC595K (`id, image, caption`) | frame captions |",
    "| `annotations.jsonl` | one JSON object per video | ground truth: objects, events, centre per frame (null while absent) |",
    "",
    "Read them with `videovlm.data.formats` (`read_webvid_csv`, `read_qa_json`, `read_instructions_json`,",
    "`read_image_captions_json`, `read_annotations_jsonl`).",
)

_QUESTION_TYPE_TABLE = (
    "",
    "## Question types",
    "",
    "| type | temporal | example | answers |",
    "|---|---|---|---|",
    "| color | no | what colour is the circle? (objects that never change colour) | colour |",
    "| shape | no | what shape is the red object? | shape |",
    "| count | no | how many objects are in the video? | one, two, three |",
    "| exists | no | is there a green star in the video? (half absent, POPE-style; half of those reuse a present shape) | yes, no |",
    "| direction | yes | which way does the square move? (moving objects only) | left, right, up, down |",
    "| order | yes | which object is seen first / last, the circle or the star? | shape |",
    "| change | yes | what colour does the star turn into? / what colour was the star before it changed? | colour |",
    "",
    "For every temporal item the same frames played backwards have a different answer (left <-> right,",
    "up <-> down, seen first <-> seen last, colour before <-> after); `reverse_annotation` computes that",
    "reversed ground truth and the tests check the property on every temporal item.",
)


def _card_question_types(stats: dict) -> list[str]:
    """The ``## Question types`` section: the fixed table, then the set's answer vocabulary."""
    return [*_QUESTION_TYPE_TABLE, "", "Answer vocabulary: " + ", ".join(f"`{a}`" for a in stats["answer_vocabulary"]) + "."]


def _card_examples(stats: dict) -> list[str]:
    """The first caption and QA items of the train split."""
    return [
        "",
        "## Examples (first items of the train split)",
        "",
        *[f"- caption: \"{c}\"" for c in stats["examples"]["captions"]],
        *[f"- {kind}: \"{qa[0]}\" -> `{qa[1]}`" for kind, qa in stats["examples"]["qa"].items() if qa],
    ]


def _card_counts(stats: dict) -> list[str]:
    """The ``## Counts and ceilings`` section: one table per split, then what the ceilings mean."""
    lines = ["", "## Counts and ceilings", ""]
    for split, s in stats["splits"].items():
        lines += _card_split(split, s)
    return lines + list(_CEILINGS_NOTE)


def _card_split(split: str, s: dict) -> list[str]:
    """One split's counts and its table of per-type answer balance and ceilings."""
    lines = [
        f"### {split}: {s['videos']} videos, {s['qa']} QA items, {s['captions']} captions, {s['instructions']} conversations, {s['image_captions']} image captions",
        "",
        "Objects per video: " + ", ".join(f"{k}: {v}" for k, v in s["objects_per_video"].items()) + ".",
        "",
        "| type | items | chance ceiling (majority answer) | order-blind ceiling | answer counts |",
        "|---|---|---|---|---|",
    ]
    for kind, t in s["question_types"].items():
        mark = " (temporal)" if kind in TEMPORAL_QUESTION_TYPES else ""
        answers = ", ".join(f"{a} {n}" for a, n in t["answers"].items())
        lines.append(f"| {kind}{mark} | {t['count']} | {_pct(t['chance_ceiling'])} | {_pct(t['order_blind_ceiling'])} | {answers} |")
    lines.append("")
    return lines


_CEILINGS_NOTE = (
    "Chance ceiling: accuracy of always giving the most frequent answer of the type. Order-blind",
    "ceiling: best accuracy from the unordered set of frames; a video and its reversal have the same",
    "frames and are equally likely under the generator, so items whose reversed answer differs are",
    "worth at most 1/2 to an order-blind model and the others 1.",
    "",
)
