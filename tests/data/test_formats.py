"""Format readers on the synthetic files and on small hand-written files in the real formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from videovlm.data.formats import (
    Conversation,
    DataFormatError,
    ImageCaption,
    MissingMediaError,
    Turn,
    VideoCaption,
    VideoQA,
    parse_duration,
    read_annotations_jsonl,
    read_image_captions_json,
    read_instructions_json,
    read_qa_json,
    read_webvid_csv,
)


def test_readers_on_synthetic_files(synth_dir):
    split = synth_dir / "val"
    captions = read_webvid_csv(split / "captions.csv")
    assert len(captions) == 4 and isinstance(captions[0], VideoCaption)
    assert captions[0].video == split / "videos" / "val_00000.mp4" and captions[0].duration == 2.0
    qa = read_qa_json(split / "qa.json")
    assert {q.video for q in qa} == {c.video for c in captions}
    assert all(isinstance(q, VideoQA) and q.type for q in qa)
    conversations = read_instructions_json(split / "instructions.json")
    assert conversations[0].media_kind == "video" and conversations[0].turns[0].text.startswith("<video>\n")
    assert all(len(c.turns) % 2 == 0 and 2 <= len(c.turns) <= 6 for c in conversations)
    images = read_image_captions_json(split / "image_captions.json")
    assert all(i.image.is_file() and i.image.suffix == ".jpg" for i in images)
    annotations = read_annotations_jsonl(split / "annotations.jsonl")
    assert [a.video_id for a in annotations] == [c.video_id for c in captions]


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_real_webvid_csv_resolves_page_dir(tmp_path):
    csv_path = tmp_path / "results_2M_val.csv"
    csv_path.write_text(
        "videoid,contentUrl,duration,page_dir,name\n"
        '31353427,https://ak.picdn.net/shutterstock/videos/31353427/preview/stock-footage.mp4,PT00H00M14S,016401_016450,"Aerial shot of winter forest"\n'
        '1016246110,https://ak.picdn.net/x.mp4,PT00H01M02.5S,101_150,"Young woman, smiling"\n'
    )
    _touch(tmp_path / "videos" / "016401_016450" / "31353427.mp4")
    _touch(tmp_path / "videos" / "101_150" / "1016246110.mp4")
    records = read_webvid_csv(csv_path, media_root=tmp_path / "videos")
    assert records[0] == VideoCaption("31353427", tmp_path / "videos" / "016401_016450" / "31353427.mp4", "Aerial shot of winter forest", 14.0)
    assert records[1].caption == "Young woman, smiling" and records[1].duration == 62.5
    with pytest.raises(MissingMediaError, match=r"results_2M_val.csv:line 2: field 'page_dir'.*016401_016450/31353427.mp4"):
        read_webvid_csv(csv_path, media_root=tmp_path)
    assert len(read_webvid_csv(csv_path, media_root=tmp_path, check_files=False)) == 2


def test_webvid_errors_name_line_and_column(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("videoid,duration\n1,PT00H00M14S\n")
    with pytest.raises(DataFormatError, match=r"bad.csv:line 1: field 'name, video or page_dir'"):
        read_webvid_csv(bad)
    bad.write_text("videoid,name,page_dir,duration\n1,a cat,p,PT00H00M14S\n2,a dog,p,soon\n")
    with pytest.raises(DataFormatError, match=r"bad.csv:line 3: field 'duration'"):
        read_webvid_csv(bad, check_files=False)
    bad.write_text("videoid,name,page_dir,duration\n1,,p,3\n")
    with pytest.raises(DataFormatError, match=r"line 2: field 'name': empty"):
        read_webvid_csv(bad, check_files=False)
    with pytest.raises(DataFormatError, match="file not found"):
        read_webvid_csv(tmp_path / "absent.csv")
    bad.write_bytes("videoid,name,page_dir\n1,caf\xe9,p\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"bad.csv:line 2: not UTF-8 text"):
        read_webvid_csv(bad, check_files=False)
    bad.write_bytes("\ufeffvideoid,name,page_dir\n1,a cat,p\n".encode("utf-8"))  # BOM from spreadsheet exports
    assert read_webvid_csv(bad, check_files=False)[0].video_id == "1"
    assert parse_duration("PT00H00M11S") == 11.0 and parse_duration("3.5") == 3.5


def test_real_msrvtt_qa_json(tmp_path):
    qa_path = tmp_path / "test_qa.json"
    qa_path.write_text(json.dumps([
        {"answer": "man", "id": 0, "question": "who is talking on stage?", "video_id": 7010},
        {"answer": "food", "id": 1, "question": "what is being cooked?", "video_id": "video7011"},
    ]))
    _touch(tmp_path / "videos" / "video7010.mp4")
    _touch(tmp_path / "videos" / "video7011.mp4")
    records = read_qa_json(qa_path, media_root=tmp_path / "videos")
    assert records[0] == VideoQA("video7010", tmp_path / "videos" / "video7010.mp4", "who is talking on stage?", "man", "who")
    assert records[1].type == "what"
    with pytest.raises(MissingMediaError, match=r"test_qa.json:item 1: field 'video_id'"):
        read_qa_json(qa_path)


def test_qa_json_errors(tmp_path):
    path = tmp_path / "qa.json"
    path.write_text('[\n {"video_id": "a", "question": "q?", "answer": "x"},\n {"video_id": "b", "question": "q?" "answer": "y"}\n]')
    with pytest.raises(DataFormatError, match=r"qa.json:line 3: malformed JSON"):
        read_qa_json(path, check_files=False)
    path.write_text(json.dumps([{"video_id": "a", "question": "q?", "answer": "x"}, {"video_id": "b", "question": "q?"}]))
    with pytest.raises(DataFormatError, match=r"qa.json:item 2: field 'answer': missing"):
        read_qa_json(path, check_files=False)
    path.write_text(json.dumps({"video_id": "a"}))
    with pytest.raises(DataFormatError, match="expected a JSON list"):
        read_qa_json(path)
    path.write_text(json.dumps([{"video_id": "a", "question": ["q?"], "answer": "x"}]))
    with pytest.raises(DataFormatError, match=r"item 1: field 'question': expected a string"):
        read_qa_json(path, check_files=False)


def test_real_llava_and_videochat_instructions(tmp_path):
    path = tmp_path / "instruct.json"
    path.write_text(json.dumps([
        {"id": "000000033471", "image": "coco/train2017/000000033471.jpg", "conversations": [
            {"from": "human", "value": "What are the colors of the bus in the image?\n<image>"},
            {"from": "gpt", "value": "The bus in the image is white and red."},
        ]},
        {"video": "v_abc.mp4", "QA": [{"i": "", "q": "Describe the video.", "a": "A man cooks."}, {"q": "Where?", "a": "In a kitchen."}]},
    ]))
    _touch(tmp_path / "coco" / "train2017" / "000000033471.jpg")
    _touch(tmp_path / "v_abc.mp4")
    image_conv, video_conv = read_instructions_json(path)
    assert image_conv == Conversation("000000033471", tmp_path / "coco/train2017/000000033471.jpg", "image", (
        Turn("human", "What are the colors of the bus in the image?\n<image>"), Turn("gpt", "The bus in the image is white and red.")))
    assert video_conv.id == "v_abc" and video_conv.media_kind == "video"
    assert [t.role for t in video_conv.turns] == ["human", "gpt", "human", "gpt"] and video_conv.turns[0].text == "<video>\nDescribe the video."


def test_instruction_errors(tmp_path):
    path = tmp_path / "instruct.json"
    path.write_text(json.dumps([{"id": "1", "video": "a.mp4", "conversations": [{"from": "gpt", "value": "hi"}]}]))
    with pytest.raises(DataFormatError, match=r"item 1: field 'conversations\[0\].from': turns must alternate"):
        read_instructions_json(path, check_files=False)
    path.write_text(json.dumps([{"id": "1", "video": "a.mp4", "conversations": [{"from": "robot", "value": "hi"}]}]))
    with pytest.raises(DataFormatError, match=r"'conversations\[0\].from': expected 'human' or 'gpt'"):
        read_instructions_json(path, check_files=False)
    path.write_text(json.dumps([{"id": "1", "conversations": []}]))
    with pytest.raises(DataFormatError, match=r"item 1: field 'video/image'"):
        read_instructions_json(path, check_files=False)
    path.write_text(json.dumps([{"id": "1", "video": "a.mp4", "conversations": [{"from": "human", "value": "<video>\nhi"}]}]))
    with pytest.raises(MissingMediaError, match=r"item 1: field 'video': file not found: .*a.mp4"):
        read_instructions_json(path)
    # A folder or a symlink loop where a video should be is named as what it is.
    (tmp_path / "a.mp4").mkdir()
    with pytest.raises(MissingMediaError, match=r"item 1: field 'video': .*a.mp4: is a directory, not a file"):
        read_instructions_json(path)
    (tmp_path / "a.mp4").rmdir()
    (tmp_path / "a.mp4").symlink_to(tmp_path / "a.mp4")
    with pytest.raises(MissingMediaError, match="a.mp4: is a symlink loop"):
        read_instructions_json(path)
    with pytest.raises(DataFormatError, match=r"a.mp4: is a symlink loop"):
        read_annotations_jsonl(tmp_path / "a.mp4")


def test_real_image_caption_json(tmp_path):
    path = tmp_path / "blip_laion_cc_sbu_558k_meta.json"
    path.write_text(json.dumps([
        {"id": "004539375", "image": "00453/004539375.jpg", "blip_caption": "select luxury furniture 3 - inch gel memory foam mattress topper"},
        {"id": "2", "image": "00000/2.jpg", "caption": "a dog"},
    ]))
    records = read_image_captions_json(path, check_files=False)
    assert records[0] == ImageCaption("004539375", tmp_path / "00453/004539375.jpg", "select luxury furniture 3 - inch gel memory foam mattress topper")
    assert records[1].caption == "a dog"
    path.write_text(json.dumps([{"id": "1", "caption": "a dog"}]))
    with pytest.raises(DataFormatError, match=r"item 1: field 'image': missing"):
        read_image_captions_json(path, check_files=False)


def test_annotation_errors(synth_dir, tmp_path):
    lines = (synth_dir / "val" / "annotations.jsonl").read_text().splitlines()
    path = tmp_path / "annotations.jsonl"
    broken = json.loads(lines[1])
    del broken["objects"][0]["motion"]
    path.write_text("\n".join([lines[0], json.dumps(broken)]) + "\n")
    with pytest.raises(DataFormatError, match=r"annotations.jsonl:line 2: field 'objects\[0\].motion': missing"):
        read_annotations_jsonl(path, check_files=False)
    path.write_text(lines[0] + "\n{not json\n")
    with pytest.raises(DataFormatError, match=r"line 2: malformed JSON"):
        read_annotations_jsonl(path, check_files=False)
    path.write_bytes(lines[0].encode() + b"\n" + b"\xff\xfe\n")
    with pytest.raises(DataFormatError, match=r"line 2: not UTF-8 text"):
        read_annotations_jsonl(path, check_files=False)
    path.write_text(lines[0] + "\n")
    with pytest.raises(MissingMediaError, match=r"line 1: field 'video'"):
        read_annotations_jsonl(path)
