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


def test_decode_size_auto_decodes_at_the_processor_s_size(tmp_path, processor):
    """``decode_size: auto``: frames come out of the decoder at the size the processor resizes
    to (short side, aspect kept), so it only crops; the pixels match decoding full size and
    letting the processor resize, within interpolation noise."""
    import numpy as np
    import torch

    from videovlm.models.pixels import decode_target
    from videovlm.video.writer import write_video

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(12, 20, 3), dtype=np.uint8)
    frames = [np.kron(np.roll(base, i, axis=1), np.ones((12, 12, 1), dtype=np.uint8)) for i in range(8)]  # 144 x 240, smooth blocks
    write_video(tmp_path / "v0.mp4", frames, fps=8, crf=0)
    (tmp_path / "qa.json").write_text(json.dumps([{"video_id": "v0", "video": "v0.mp4", "question": "what colour is it?", "answer": "red"}]))
    auto = VideoQADataset(path=tmp_path / "qa.json", processor=processor, decode_size="auto", train=False)
    target = decode_target(processor.pixel)
    assert auto.decode_size == target
    full = VideoQADataset(path=tmp_path / "qa.json", processor=processor, train=False)
    scaled, reference = auto[0]["pixel_values"], full[0]["pixel_values"]
    assert scaled.shape == reference.shape
    assert float((scaled - reference).abs().mean()) < 0.1  # normalised units (~6 levels of 255 would be 0.09)
    assert not torch.equal(scaled, reference)  # really decoded at another size
    with pytest.raises(DataError, match="decode_size: expected"):
        VideoQADataset(path=tmp_path / "qa.json", processor=processor, decode_size="small")
