"""Readers for VideoInstruct-100K, ActivityNet-QA and LLaVA-Video-178K style mixtures."""

from __future__ import annotations

import json

import pytest

from videovlm.data.community import read_activitynet_qa, read_mixture, read_videoinstruct_json
from videovlm.data.formats import DataFormatError, MissingMediaError


def test_videoinstruct_items_become_one_turn_conversations(tmp_path):
    (tmp_path / "v_abc.mkv").write_bytes(b"x")
    path = tmp_path / "VideoInstruct100K.json"
    path.write_text(json.dumps([{"video_id": "v_abc", "q": "What happens?", "a": "A man runs."}]))
    (record,) = read_videoinstruct_json(path)
    assert record.media == tmp_path / "v_abc.mkv" and record.media_kind == "video"  # the extension that exists
    assert [(t.role, t.text) for t in record.turns] == [("human", "<video>\nWhat happens?"), ("gpt", "A man runs.")]
    path.write_text(json.dumps([{"video_id": "v_missing", "q": "q", "a": "a"}]))
    with pytest.raises(MissingMediaError, match="item 1: field 'video_id'.*v_missing.mp4"):
        read_videoinstruct_json(path)
    path.write_text(json.dumps([{"video_id": "v_abc", "q": "q"}]))
    with pytest.raises(DataFormatError, match="item 1: field 'a': missing"):
        read_videoinstruct_json(path)


def test_activitynet_qa_joins_the_split_files(tmp_path):
    (tmp_path / "v_JDg--pjY5gg.mp4").write_bytes(b"x")
    questions = [{"video_name": "JDg--pjY5gg", "question": "is the man indoors", "question_id": "q0"},
                 {"video_name": "JDg--pjY5gg", "question": "what is he holding", "question_id": "q1"}]
    answers = [{"answer": "yes", "type": 3, "question_id": "q0"}, {"answer": "ball", "type": 5, "question_id": "q1"}]
    (tmp_path / "test_q.json").write_text(json.dumps(questions))
    (tmp_path / "test_a.json").write_text(json.dumps(answers))
    records = read_activitynet_qa(tmp_path / "test_q.json")
    assert [(r.video, r.answer, r.type) for r in records] == [(tmp_path / "v_JDg--pjY5gg.mp4", "yes", "yes_no"), (tmp_path / "v_JDg--pjY5gg.mp4", "ball", "object")]
    (tmp_path / "test_a.json").write_text(json.dumps(answers[:1]))
    with pytest.raises(DataFormatError, match="item 2: field 'question_id': 'q1' has no answer"):
        read_activitynet_qa(tmp_path / "test_q.json")
    (tmp_path / "test_a.json").write_text(json.dumps([{**answers[0], "type": 11}]))
    with pytest.raises(DataFormatError, match="test_a.json:item 1: field 'type': expected an integer 0-8"):
        read_activitynet_qa(tmp_path / "test_q.json")


def test_mixture_samples_each_file_by_its_strategy(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()

    def instructions(name, count):
        items = [{"id": f"{name}{i}", "video": f"{name}{i}.mp4", "conversations": [{"from": "human", "value": "<video> hi"}, {"from": "gpt", "value": f"{i}"}]}
                 for i in range(count)]
        (tmp_path / f"{name}.json").write_text(json.dumps(items))

    instructions("a", 10)
    instructions("b", 4)
    mixture = tmp_path / "mixture.yaml"
    mixture.write_text("datasets:\n  - json_path: a.json\n    sampling_strategy: first:30%\n    video_folder: videos\n"
                       "  - json_path: b.json\n    sampling_strategy: random:2\n")
    records = read_mixture(mixture, check_files=False)
    assert [r.id for r in records[:3]] == ["a0", "a1", "a2"] and records[0].media == videos / "a0.mp4"
    assert len(records) == 5 and {r.id for r in records[3:]} < {"b0", "b1", "b2", "b3"}
    assert records == read_mixture(mixture, check_files=False)  # seeded
    mixture.write_text("datasets:\n  - json_path: a.json\n    sampling_strategy: half\n")
    with pytest.raises(DataFormatError, match=r"datasets\[0\]: field 'sampling_strategy'"):
        read_mixture(mixture, check_files=False)
