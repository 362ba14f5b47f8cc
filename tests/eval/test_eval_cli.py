"""`videovlm eval` end to end: predictions in, report.json + markdown + PNG out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from videovlm.cli import main
from videovlm.data.formats import read_qa_json, read_webvid_csv


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def synthetic_test_split(tmp_path_factory) -> Path:
    from videovlm.data.synthetic.generate import generate

    root = tmp_path_factory.mktemp("synthetic")
    generate(root, train=0, val=0, test=4, seed=3, workers=1, overwrite=True)
    return root / "test"


def test_qa_predictions_report_with_errors(tmp_path, synthetic_test_split, capsys):
    questions = read_qa_json(synthetic_test_split / "qa.json", check_files=False)
    rows = []
    for index, qa in enumerate(questions):
        row = {"video_id": qa.video_id, "question": qa.question, "answer": qa.answer, "type": qa.type}
        if index == 0:
            row["error"] = "could not decode video"  # counted as wrong
        elif index % 3 == 1:
            row["prediction"] = "wrong answer"
        else:
            row["prediction"] = f"The {qa.answer.upper()}."  # right after normalisation
        rows.append(row)
    predictions = _write_jsonl(tmp_path / "predictions.jsonl", rows)
    output = tmp_path / "out" / "report.json"

    assert main(["eval", "--task", "qa", "--predictions", str(predictions), "--output", str(output)]) == 0

    report = json.loads(output.read_text())
    expected_correct = sum(1 for i in range(len(rows)) if i != 0 and i % 3 != 1)
    assert report["counts"] == {"items": len(rows), "errors": 1}
    assert report["metrics"]["accuracy"] == pytest.approx(expected_correct / len(rows))
    assert set(report["per_type"]) == {qa.type for qa in questions}
    assert sum(row["total"] for row in report["per_type"].values()) == len(rows)
    assert report["per_type"][questions[0].type]["errors"] == 1
    temporal = [i for i, qa in enumerate(questions) if qa.type in ("direction", "order", "change")]
    assert temporal, "the synthetic split should hold temporal questions"
    temporal_correct = sum(1 for i in temporal if i != 0 and i % 3 != 1)
    assert report["metrics"]["accuracy/temporal"] == pytest.approx(temporal_correct / len(temporal))
    assert report["command"][:4] == ["videovlm", "eval", "--task", "qa"] and report["predictions"] == str(predictions)
    markdown = output.with_suffix(".md").read_text()
    assert "| type | accuracy | correct | total | errors |" in markdown and markdown in capsys.readouterr().out
    assert output.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # reproducible run to run: the same predictions give byte-identical files
    again = tmp_path / "again" / "report.json"
    assert main(["eval", "--task", "qa", "--predictions", str(predictions), "--output", str(again)]) == 0
    assert json.loads(again.read_text())["metrics"] == report["metrics"]
    assert again.with_suffix(".png").read_bytes() == output.with_suffix(".png").read_bytes()


def test_pope_from_predictions(tmp_path):
    rows = [
        {"video_id": "a", "answer": "yes", "prediction": "yes", "type": "exists"},
        {"video_id": "a", "answer": "no", "prediction": "yes", "type": "exists"},
        {"video_id": "b", "answer": "no", "prediction": "no", "type": "exists"},
        {"video_id": "b", "answer": "red", "prediction": "red", "type": "color"},  # not a probe
    ]
    output = tmp_path / "pope.json"
    assert main(["eval", "--task", "pope", "--predictions", str(_write_jsonl(tmp_path / "p.jsonl", rows)), "--output", str(output)]) == 0
    metrics = json.loads(output.read_text())["metrics"]
    assert metrics == pytest.approx({"accuracy": 2 / 3, "precision": 0.5, "recall": 1.0, "f1": 2 / 3, "yes_ratio": 2 / 3})


def test_caption_with_references_from_data_and_chair(tmp_path, synthetic_test_split):
    captions = read_webvid_csv(synthetic_test_split / "captions.csv", check_files=False)
    rows = [{"video_id": c.video_id, "prediction": c.caption} for c in captions]
    rows[-1] = {"video_id": captions[-1].video_id, "prediction": "a green star and a purple circle and a red square and a blue triangle"}
    output = tmp_path / "caption.json"
    args = ["eval", "--task", "caption", "--predictions", str(_write_jsonl(tmp_path / "c.jsonl", rows))]
    assert main([*args, "--data", str(synthetic_test_split / "captions.csv"), "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    metrics = report["metrics"]
    assert 0.5 < metrics["BLEU-4"] < 1.0 and metrics["CIDEr-D"] > 0
    assert "CIDEr-D" not in report["fraction_metrics"]
    # only the last caption invents objects: all four shapes cannot be in one video (1-3 objects)
    assert report["details"]["chair/shape"]["captions_hallucinating"] == 1
    assert metrics["CHAIR-s/color_shape"] == pytest.approx(1 / len(rows))


def test_retrieval_from_scores_file(tmp_path):
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.3], [0.4, 0.4]])
    path = tmp_path / "scores.safetensors"
    save_file({"scores": scores, "text_to_video": torch.tensor([0, 1, 1])}, str(path))
    output = tmp_path / "retrieval.json"
    assert main(["eval", "--task", "retrieval", "--scores", str(path), "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    # t2v ranks 1, 1, 2 (tie goes against the truth); v2t ranks 1, 1
    assert report["metrics"]["t2v/R@1"] == pytest.approx(2 / 3) and report["metrics"]["v2t/R@1"] == 1.0
    assert "| t2v/median_rank | 1.0000 |" in output.with_suffix(".md").read_text()


def test_bad_inputs_give_clear_errors(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video_id": "a", "answer": "x", "prediction": "x"}\n{"video_id": "b", "answer": "y"}\n')
    assert main(["eval", "--task", "qa", "--predictions", str(bad), "--output", str(tmp_path / "r.json")]) == 2
    assert f"{bad}:2: needs a 'prediction' or an 'error' field" in capsys.readouterr().err
    bad.write_text("not json\n")
    assert main(["eval", "--task", "qa", "--predictions", str(bad), "--output", str(tmp_path / "r.json")]) == 2
    assert f"{bad}:1: not valid JSON" in capsys.readouterr().err
    assert main(["eval", "--task", "caption", "--predictions", str(_write_jsonl(bad, [{"video_id": "a", "prediction": "x"}])), "--output", str(tmp_path / "r.json")]) == 2
    assert "video 'a' has no reference captions" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_caption_clipscore_with_a_saved_tiny_clip(tmp_path, synthetic_test_split):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, PreTrainedTokenizerFast

    from videovlm.eval.clipscore import caption_clip_scores, load_hf_clip_core

    captions = read_webvid_csv(synthetic_test_split / "captions.csv", check_files=True)
    words = ["[PAD]", "[UNK]"] + sorted({w for c in captions for w in c.caption.replace(",", " ").replace(".", " ").split()})
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    clip_dir = tmp_path / "clip"
    PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]").save_pretrained(clip_dir)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(clip_dir)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=64, eos_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=16),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(clip_dir)

    rows = [{"video_id": c.video_id, "prediction": c.caption} for c in captions]
    output = tmp_path / "caption.json"
    args = ["eval", "--task", "caption", "--predictions", str(_write_jsonl(tmp_path / "c.jsonl", rows))]
    args += ["--data", str(synthetic_test_split / "captions.csv"), "--clip-model", str(clip_dir), "--sampler", "uniform:4"]
    assert main([*args, "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    core, processor = load_hf_clip_core(clip_dir)
    direct = caption_clip_scores(
        core, image_processor=processor, videos={c.video_id: c.video for c in captions}, captions={c.video_id: c.caption for c in captions}, sampler="uniform:4"
    )
    assert 0.0 <= report["metrics"]["CLIPScore"] <= 2.5
    assert report["metrics"]["CLIPScore"] == pytest.approx(sum(direct.values()) / len(direct))
    assert report["command"][-2:] == ["--sampler", "uniform:4"]
    # without the captions CSV there are no videos to score
    del args[args.index("--data") : args.index("--data") + 2]
    assert main([*args, "--output", str(output)]) == 2
