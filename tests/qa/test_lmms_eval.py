"""lmms-eval's `--model videovlm`: registered by our entry point; lmms-eval's own evaluator on a
local multiple-choice task (JSON on disk, no hub) answered by generation gets the accuracy of
`videovlm eval --task mcq --scoring generate`; its loglikelihood requests pick the options
`--scoring likelihood` picks; generate_until and the multi-round protocol on their own.

(lmms-eval 0.7.3's evaluator cannot run a `multiple_choice` task with any model: it passes
every response through `unwrap_generation_output`, which turns the `(float, bool)` of a
loglikelihood request into a string, and the task's `zip(*results)` then fails. So the
likelihood path is checked through the model's `loglikelihood` method.)"""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.qa.conftest import QUESTION

pytest.importorskip("lmms_eval.evaluator", reason="lmms-eval is not installed (pip install -e '.[lmms]' && pip install --no-deps lmms-eval==0.7.3)")

from lmms_eval.api.instance import Instance  # noqa: E402

from videovlm.integrations.lmms_eval import VideovlmLMM  # noqa: E402


def _items(clips) -> list[dict]:
    """The MCQ items of the test, in the format both `videovlm eval` and the task read."""
    return [
        {"video_id": "red", "video": str(clips["red"]), "question": QUESTION, "candidates": ["blue", "red"], "answer": "red", "type": "colour"},
        {"video_id": "blue", "video": str(clips["blue"]), "question": QUESTION, "candidates": ["blue", "red"], "answer": "blue", "type": "colour"},
        {"video_id": "blue_as_red", "video": str(clips["blue"]), "question": QUESTION, "candidates": ["red", "blue"], "answer": "red", "type": "colour"},
    ]


def _task_folder(tmp_path, clips):
    """A local lmms-eval task: the MCQ prompt of `videovlm eval --task mcq --scoring generate`,
    answered by generation and scored by videovlm's own letter parsing."""
    from videovlm.data.mcq import mcq_prompt, read_mcq_json

    folder = tmp_path / "tasks"
    folder.mkdir()
    mcq = tmp_path / "mcq.json"
    mcq.write_text(json.dumps(_items(clips)))
    docs = [{"video": str(item.video), "prompt": mcq_prompt(item), "options": list(item.options), "target": item.answer} for item in read_mcq_json(mcq)]
    (folder / "mcq.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "utils.py").write_text(textwrap.dedent("""\
        from videovlm.data.mcq import parse_choice


        def doc_to_visual(doc):
            return [doc["video"]]


        def process_results(doc, results):
            return {"acc": int(parse_choice(results[0], doc["options"]) == doc["target"])}
        """))
    (folder / "videovlm_mcq.yaml").write_text(textwrap.dedent(f"""\
        task: videovlm_synth_mcq
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {folder / 'mcq.jsonl'}
        test_split: test
        output_type: generate_until
        doc_to_visual: !function utils.doc_to_visual
        doc_to_text: "{{{{prompt}}}}"
        doc_to_target: target
        generation_kwargs:
          max_new_tokens: 8
        process_results: !function utils.process_results
        metric_list:
          - metric: acc
            aggregation: mean
            higher_is_better: true
        """))
    return folder


def test_the_entry_point_registers_the_model():
    from lmms_eval.models import get_model

    assert get_model("videovlm") is VideovlmLMM


def test_lmms_eval_s_evaluator_gets_videovlm_s_mcq_accuracy(trained_llama, clips, tmp_path, monkeypatch):
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    from videovlm.qa.mcq import predict_mcq_records

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    manager = TaskManager(include_path=str(_task_folder(tmp_path, clips)), include_defaults=False)
    rows = predict_mcq_records(model_dir=trained_llama, data=tmp_path / "mcq.json", scoring="generate", sampler="uniform:2")
    ours = sum(r["prediction"] == r["answer"] for r in rows) / len(rows)
    results = simple_evaluate(
        model="videovlm", model_args=f"pretrained={trained_llama},sampler=uniform:2", tasks=["videovlm_synth_mcq"],
        task_manager=manager, batch_size=1, device="cpu", log_samples=False,
    )
    assert results["results"]["videovlm_synth_mcq"]["acc,none"] == pytest.approx(ours)
    assert ours == pytest.approx(2 / 3)  # the third item's "answer" is the wrong colour on purpose


def test_loglikelihood_picks_the_options_likelihood_scoring_picks(trained_llama, clips, tmp_path):
    from videovlm.data.mcq import LETTERS
    from videovlm.qa.mcq import predict_mcq_records

    mcq = tmp_path / "mcq.json"
    mcq.write_text(json.dumps(_items(clips)))
    rows = predict_mcq_records(model_dir=trained_llama, data=mcq, scoring="likelihood", sampler="uniform:2")
    model = VideovlmLMM(pretrained=str(trained_llama), sampler="uniform:2")
    model.task_dict = {"t": {"test": _items(clips)}}
    visual = lambda doc: [doc["video"]]  # noqa: E731
    for doc_id, (item, row) in enumerate(zip(_items(clips), rows)):
        requests = [_instance("loglikelihood", (item["question"], f" {option}", visual, doc_id, "t", "test")) for option in item["candidates"]]
        scores = [score for score, _ in model.loglikelihood(requests)]
        assert scores == pytest.approx(row["scores"], abs=1e-4)
        assert LETTERS[max(range(len(scores)), key=scores.__getitem__)] == row["prediction"]


def _instance(kind: str, args: tuple) -> Instance:
    return Instance(request_type=kind, arguments=args, idx=0, metadata={"task": "t", "doc_id": 0, "repeats": 1})


def test_generate_until_and_the_multi_round_protocol(trained_llama, clips):
    model = VideovlmLMM(pretrained=str(trained_llama), sampler="uniform:2")
    model.task_dict = {"t": {"test": [{"video": str(clips["red"])}, {"video": str(clips["blue"])}]}}
    visual = lambda doc: [doc["video"]]  # noqa: E731
    generated = model.generate_until([
        _instance("generate_until", (QUESTION, {"max_new_tokens": 8, "until": ["\n"]}, visual, 0, "t", "test")),
        _instance("generate_until", (QUESTION, {"max_new_tokens": 8}, visual, 1, "t", "test")),
    ])
    assert generated == ["red", "blue"]

    def next_round(doc, previous_output, round_idx, previous_round_info):
        # A second question about the same video, then the end.
        return None, QUESTION, round_idx >= 2, previous_output, {"round": round_idx}

    rounds = model.generate_until_multi_round([_instance("generate_until_multi_round", (QUESTION, {"max_new_tokens": 8}, visual, next_round, 0, "t", "test"))])
    assert rounds == [["red", "red"]]
    scored = model.loglikelihood([
        _instance("loglikelihood", (QUESTION, " red", visual, 0, "t", "test")),
        _instance("loglikelihood", (QUESTION, " blue", visual, 0, "t", "test")),
    ])
    assert scored[0][0] > scored[1][0] and scored[0][1] is True and scored[1][1] is False
    with pytest.raises(Exception, match="unknown colour"):
        VideovlmLMM(pretrained=str(trained_llama), colour="red")
