"""Recipe dataset components: the question-type filter of VideoQADataset."""

from __future__ import annotations

import json

import pytest

from videovlm.train.data import DataError
from videovlm.train.datasets import VideoQADataset


@pytest.fixture(scope="module")
def processor():
    from videovlm.models import train_tokenizer
    from videovlm.models.presets import tiny_videollama

    tokenizer = train_tokenizer(["which way does the square move? left right what colour is it? red blue"], vocab_size=80)
    return tiny_videollama(tokenizer=tokenizer).processor


@pytest.fixture
def qa_file(tmp_path):
    items = [
        {"video_id": "v0", "video": "v0.mp4", "question": "which way does the square move?", "answer": "left", "type": "direction"},
        {"video_id": "v0", "video": "v0.mp4", "question": "what colour is the square?", "answer": "red", "type": "color"},
        {"video_id": "v1", "video": "v1.mp4", "question": "which way does the square move?", "answer": "right", "type": "direction"},
    ]
    path = tmp_path / "qa.json"
    path.write_text(json.dumps(items))
    return path


def test_types_keeps_only_those_questions(qa_file, processor):
    everything = VideoQADataset(path=qa_file, processor=processor)
    direction = VideoQADataset(path=qa_file, processor=processor, types=["direction"])
    assert len(everything) == 3
    assert [r.answer for r in direction.records] == ["left", "right"]
    assert len(VideoQADataset(path=qa_file, processor=processor, types=["direction"], limit=1)) == 1  # limit counts kept items


def test_bad_types_name_the_problem(qa_file, processor):
    with pytest.raises(DataError, match=r"no question of type order \(types: color, direction\)"):
        VideoQADataset(path=qa_file, processor=processor, types=["order"])
    for bad in ("direction", [], [3]):
        with pytest.raises(DataError, match="types: expected a non-empty list of question type names"):
            VideoQADataset(path=qa_file, processor=processor, types=bad)
