"""Temporal questions change their answer when the frames play backwards; static ones do not."""

from __future__ import annotations

import json

import numpy as np
import pytest

from videovlm.data.formats import read_annotations_jsonl
from videovlm.data.synthetic import TEMPORAL_QUESTION_TYPES, answer_query, parse_question, reverse_annotation
from videovlm.data.synthetic.questions import QUESTION_TEMPLATES, Query, UnanswerableQuestion
from videovlm.data.synthetic.render import render_background, render_video
from videovlm.data.synthetic.scene import sample_scene


def test_every_temporal_item_flips_under_reversal(synth_dir):
    temporal = 0
    for split in ("train", "val", "test"):
        annotations = {a.video_id: a for a in read_annotations_jsonl(synth_dir / split / "annotations.jsonl", check_files=False)}
        for item in json.loads((synth_dir / split / "qa.json").read_text()):
            ann = annotations[item["video_id"]]
            query = parse_question(item["question"])
            assert query.type == item["type"]
            assert answer_query(ann, query) == item["answer"]
            reversed_answer = answer_query(reverse_annotation(ann), query)
            if item["type"] in TEMPORAL_QUESTION_TYPES:
                temporal += 1
                assert reversed_answer != item["answer"], item
            else:
                assert reversed_answer == item["answer"], item
    assert temporal >= 10


def test_reversed_ground_truth_renders_the_reversed_frames():
    for index in range(40):
        rng = np.random.default_rng([11, 0, index])
        ann = sample_scene(rng, video_id=f"v{index}", size=112, num_frames=16, fps=8.0)
        background = render_background(rng, height=112, width=112)
        rev = reverse_annotation(ann)
        assert reverse_annotation(rev) == ann
        np.testing.assert_array_equal(render_video(rev, background), render_video(ann, background)[::-1])


def test_every_template_parses_back():
    for (kind, variant), templates in QUESTION_TEMPLATES.items():
        for template in templates:
            text = template.format(shape="star", color="orange", a="circle", b="square").replace("a orange", "an orange")
            query = parse_question(text)
            assert (query.type, query.variant) == (kind, variant), text
    with pytest.raises(ValueError, match="not a question"):
        parse_question("what is the meaning of life?")


def test_unanswerable_queries_are_refused():
    rng = np.random.default_rng([5, 0, 0])
    ann = sample_scene(rng, video_id="v", size=112, num_frames=16, fps=8.0)
    missing = next(s for s in ("circle", "square", "triangle", "star") if s not in {o.shape for o in ann.objects})
    with pytest.raises(UnanswerableQuestion, match=missing):
        answer_query(ann, Query("direction", shape=missing))
