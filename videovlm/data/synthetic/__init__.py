"""The embedded default data set: small synthetic videos with temporal questions.

``generate(output_dir, *, train, val, test, seed, size, frames, fps, workers)`` writes the files;
``reverse_annotation`` gives the ground truth of a video played backwards; ``corpus_texts``
yields every text of a split (to train a tokenizer); the closed vocabulary is in
``videovlm.data.synthetic.vocabulary``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from videovlm.data.synthetic.generate import SPLITS, GenerationResult, generate
from videovlm.data.synthetic.questions import Query, answer_query, parse_question
from videovlm.data.synthetic.scene import ObjectTrack, VideoAnnotation, reverse_annotation
from videovlm.data.synthetic.vocabulary import (
    ANSWER_VOCABULARY,
    ANSWERS_BY_TYPE,
    COLOR_NAMES,
    QUESTION_TYPES,
    SHAPES,
    STATIC_QUESTION_TYPES,
    TEMPORAL_QUESTION_TYPES,
)


def corpus_texts(split_dir: str | Path) -> Iterator[str]:
    """Every caption, question, answer, instruction turn and image caption of one split folder.

    Media placeholders (``<video>``) are stripped from instruction turns: tokenizers add them as
    special tokens.
    """
    from videovlm.data.formats import read_image_captions_json, read_instructions_json, read_qa_json, read_webvid_csv

    split_dir = Path(split_dir)
    for record in read_webvid_csv(split_dir / "captions.csv", check_files=False):
        yield record.caption
    for item in read_qa_json(split_dir / "qa.json", check_files=False):
        yield item.question
        yield item.answer
    for conversation in read_instructions_json(split_dir / "instructions.json", check_files=False):
        for turn in conversation.turns:
            yield turn.text.replace("<video>\n", "").replace("<video>", "").strip()
    for image in read_image_captions_json(split_dir / "image_captions.json", check_files=False):
        yield image.caption


__all__ = [
    "ANSWER_VOCABULARY",
    "ANSWERS_BY_TYPE",
    "COLOR_NAMES",
    "QUESTION_TYPES",
    "SHAPES",
    "SPLITS",
    "STATIC_QUESTION_TYPES",
    "TEMPORAL_QUESTION_TYPES",
    "GenerationResult",
    "ObjectTrack",
    "Query",
    "VideoAnnotation",
    "answer_query",
    "corpus_texts",
    "generate",
    "parse_question",
    "reverse_annotation",
]
