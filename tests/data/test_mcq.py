"""Multiple-choice files: MVBench / Video-MME layouts, typed errors, prompts, answer parsing."""

from __future__ import annotations

import json

import pytest

from videovlm.data.formats import DataFormatError
from videovlm.data.mcq import mcq_prompt, parse_choice, read_mcq_json, synthetic_mcq


def _write(tmp_path, items):
    path = tmp_path / "mcq.json"
    path.write_text(json.dumps(items))
    return path


def test_both_layouts_read_to_the_same_items(tmp_path):
    mvbench = [{"video_id": "v1", "question": "what colour?", "candidates": ["red", "blue", "green"], "answer": "blue", "task_type": "colour", "start": 1, "end": 3.5}]
    videomme = [{"videoID": "v1", "question": "what colour?", "options": ["A. red", "B. blue", "C. green"], "answer": "B", "type": "colour", "start": 1, "end": 3.5}]
    (a,), (b,) = read_mcq_json(_write(tmp_path, mvbench), check_files=False), read_mcq_json(_write(tmp_path, videomme), check_files=False)
    assert a == b
    assert (a.options, a.answer, a.answer_letter, a.type, a.start, a.end) == (("red", "blue", "green"), 1, "B", "colour", 1.0, 3.5)
    assert a.video == tmp_path / "v1.mp4"
    assert mcq_prompt(a) == "what colour?\n(A) red\n(B) blue\n(C) green\nanswer with the option's letter."


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"candidates": ["red"]}, "candidates", "expected a list of 2 to 10"),
        ({"candidates": ["red", "Red"]}, "candidates", "two options are the same text"),
        ({"answer": "purple"}, "answer", "neither an option's text nor the letter"),
        ({"answer": "D"}, "answer", "neither an option's text nor the letter"),
        ({"start": -1}, "start", "expected seconds >= 0"),
        ({"start": 4, "end": 2}, "end", "is not after start"),
        ({"question": None}, "question", "missing"),
    ],
)
def test_bad_items_name_the_item_and_field(tmp_path, change, field, message):
    good = {"video_id": "v1", "question": "what colour?", "candidates": ["red", "blue", "green"], "answer": "red"}
    bad = {**good, **change}
    with pytest.raises(DataFormatError, match=f"item 2: field '{field}': .*{message}"):
        read_mcq_json(_write(tmp_path, [good, bad]), check_files=False)


@pytest.mark.parametrize(
    "generation, expected",
    [
        ("B", 1), ("(B)", 1), ("B. blue", 1), ("b) blue", 1), ("  C) green", 2), ("blue", 1), ("Blue.", 1),
        ("the answer is blue", 1),
        (")", None), ("", None), ("E", None),  # a bare bracket, nothing, a letter that is no option
        ("red or blue", None),  # names two options: no lucky match
        ("purple", None),
    ],
)
def test_parse_choice_is_never_a_lucky_match(generation, expected):
    assert parse_choice(generation, ["red", "blue", "green"]) == expected


def test_synthetic_mcq_draws_distractors_from_the_type(tmp_path):
    qa = [{"video_id": f"v{i}", "video": f"videos/v{i}.mp4", "question": q, "answer": a, "type": t}
          for i, (q, a, t) in enumerate([("what colour?", "red", "color"), ("what colour?", "blue", "color"), ("what colour?", "green", "color"),
                                         ("how many?", "two", "count"), ("how many?", "one", "count"), ("which shape?", "star", "shape")])]
    (tmp_path / "qa.json").write_text(json.dumps(qa))
    items = synthetic_mcq(tmp_path / "qa.json")
    assert len(items) == 5  # "shape" has one answer here: no distractors, left out
    colours = [i for i in items if i["type"] == "color"]
    assert all(sorted(i["candidates"]) == ["blue", "green", "red"] for i in colours)
    assert all(i["answer"] in i["candidates"] and i["video"].startswith("videos/") for i in items)
    assert items == synthetic_mcq(tmp_path / "qa.json")  # seeded
    path = _write(tmp_path, items)
    assert [r.answer_letter for r in read_mcq_json(path, check_files=False)] == [chr(65 + i["candidates"].index(i["answer"])) for i in items]
