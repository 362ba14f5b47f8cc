"""lmms-eval model ``videovlm``: evaluate any model saved by videovlm with lmms-eval.

    pip install -e ".[lmms]" && pip install --no-deps lmms-eval==0.7.3
    lmms-eval --model videovlm --model_args pretrained=runs/videollama/tiny/instruct/final --tasks TASK

``--no-deps``: lmms-eval 0.7.3 pins ``av<16`` (videovlm reads videos with PyAV 18) and pulls
torchvision and ``wandb==0.25``, none of which install beside CPU torch 2.13 here; the ``lmms``
extra installs what its model API and evaluator import. The model registers through
lmms-eval's ``lmms_eval.models`` entry point (``[project.entry-points]`` in pyproject.toml).

Requests, as lmms-eval's simple models take them:

- ``loglikelihood``: context = the question, continuation = an answer; the log-probability of
  the answer's tokens given the video and the question (summed; the mean with
  ``length_normalize=True``), which is what ``videovlm eval --task mcq --scoring likelihood``
  scores, so an lmms-eval ``multiple_choice`` task gets the same accuracy. ``is_greedy``: the
  model's greedy answer is the continuation.
- ``generate_until``: the model's answer (``max_new_tokens``, ``num_beams``, ``do_sample``,
  ``temperature``, ``top_p`` from the task), cut at the first ``until`` string.
- ``generate_until_multi_round``: round 0 answers the context; each later round asks the task's
  ``doc_to_text(doc, previous_output=..., round_idx=..., previous_round_info=...)`` for the
  next question until it signals the end. Video-LLaMA keeps one conversation across rounds
  (``VideoQA.chat``); the other families answer each round on its own.

The visual of a document (``doc_to_visual``) is a video path, or a list whose first item is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

try:
    from lmms_eval.api.instance import Instance
    from lmms_eval.api.model import lmms
    from lmms_eval.models.registry_v2 import ModelManifest
except ImportError as error:  # pragma: no cover - exercised only without lmms-eval
    raise ImportError(
        f"videovlm.integrations.lmms_eval needs lmms-eval ({error}): pip install -e '.[lmms]' && pip install --no-deps lmms-eval==0.7.3"
    ) from None

from videovlm.data.mcq import MCQItem
from videovlm.qa import GenerationSettings, QAInputError, VideoQA
from videovlm.qa.frames import SampledFrames
from videovlm.qa.mcq import option_log_likelihoods

_TRUE = {"1", "true", "yes"}


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in _TRUE


class VideovlmLMM(lmms):
    """A ``VideoQA`` behind lmms-eval's model interface (``--model videovlm``).

    Args (``--model_args``): ``pretrained`` (a folder written by ``save_pretrained``),
    ``sampler`` (default: the model's training sampler), ``length_normalize``, and lmms-eval's
    own ``device`` and ``batch_size`` (requests are answered one at a time).
    """

    def __init__(self, pretrained: str, sampler: str | None = None, length_normalize: bool | str = False, device: str | None = None, batch_size: int | str = 1, **unknown: Any):
        super().__init__()
        if unknown:
            raise QAInputError(f"videovlm model_args: unknown {', '.join(sorted(unknown))} (known: pretrained, sampler, length_normalize, device, batch_size)")
        self.vqa = VideoQA.from_pretrained(pretrained, sampler=sampler, device=device or "cpu")
        self.length_normalize = _flag(length_normalize)
        self.batch_size_per_gpu = int(batch_size)
        self._frames: dict[tuple, SampledFrames] = {}  # per document: every option scores the same frames

    # -- documents -----------------------------------------------------------------------

    def _doc(self, task: str, split: str, doc_id: int) -> dict:
        return self.task_dict[task][split][doc_id]

    def _video(self, doc_to_visual, doc: dict) -> str:
        return _first_video(doc_to_visual(doc))

    def _doc_frames(self, doc_to_visual, task: str, split: str, doc_id: int) -> tuple[str, SampledFrames]:
        key = (task, split, doc_id)
        video = self._video(doc_to_visual, self._doc(task, split, doc_id))
        if key not in self._frames:
            self._frames = {key: self.vqa.frames(video)}  # documents come in order: keep the last only
        return video, self._frames[key]

    # -- requests ------------------------------------------------------------------------

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        results = []
        for context, doc_to_target, doc_to_visual, doc_id, task, split in [request.args for request in requests]:
            continuation = doc_to_target if isinstance(doc_to_target, str) else doc_to_target(self._doc(task, split, doc_id))
            video, frames = self._doc_frames(doc_to_visual, task, split, doc_id)
            item = MCQItem(video_id=str(doc_id), video=Path(video), question=context.strip(), options=(str(continuation).strip(),), answer=0)
            score = option_log_likelihoods(self.vqa, item, frames, length_normalize=self.length_normalize)[0]
            greedy = self.vqa.answer_prompts([self.vqa.prompt(context.strip(), frames)])[0].strip()
            results.append((float(score), greedy == str(continuation).strip()))
        return results

    def generate_until(self, requests: list[Instance]) -> list[str]:
        results = []
        for context, gen_kwargs, doc_to_visual, doc_id, task, split in [request.args for request in requests]:
            settings, until = _settings(gen_kwargs)
            _, frames = self._doc_frames(doc_to_visual, task, split, doc_id)
            answer = self.vqa.answer_prompts([self.vqa.prompt(context.strip(), frames)], settings=settings)[0]
            results.append(_cut(answer, until))
        return results

    def generate_until_multi_round(self, requests: list[Instance]) -> list[list[str]]:
        results = []
        for context, gen_kwargs, doc_to_visual, doc_to_text, doc_id, task, split in [request.args for request in requests]:
            settings, until = _settings(gen_kwargs)
            doc = self._doc(task, split, doc_id)
            video = self._video(doc_to_visual, doc)
            chat = self.vqa.chat(video, settings=settings) if self.vqa.answerer.supports_chat else None
            answers: list[str] = []
            info, question, round_idx = None, context, 0
            while True:
                if round_idx > 0:
                    visuals, question, terminal, answers, info = doc_to_text(doc, previous_output=answers, round_idx=round_idx, previous_round_info=info)
                    answers = list(answers)
                    if terminal:
                        break
                    if visuals:  # the task may show another video this round
                        video = _first_video(visuals)
                answer = chat.ask(question.strip()) if chat is not None else self.vqa.qa(video, question.strip(), settings=settings)
                answers.append(_cut(answer, until))
                round_idx += 1
            results.append(answers)
        return results


def _first_video(visual: Any) -> str:
    """The video of a ``doc_to_visual`` result: a path, or a list starting with one."""
    while isinstance(visual, (list, tuple)) and visual:
        visual = visual[0]
    if not isinstance(visual, (str, Path)):
        raise QAInputError(f"videovlm: doc_to_visual must give a video path (or a list starting with one), got {type(visual).__name__}")
    return str(visual)


def _settings(gen_kwargs: dict | None) -> tuple[GenerationSettings, Sequence[str]]:
    kwargs = dict(gen_kwargs or {})
    until = kwargs.get("until") or ()
    settings = GenerationSettings(
        max_new_tokens=int(kwargs.get("max_new_tokens", 32)),
        num_beams=int(kwargs.get("num_beams", 1)),
        do_sample=bool(kwargs.get("do_sample", False)),
        temperature=float(kwargs.get("temperature") or 1.0),
        top_p=float(kwargs.get("top_p") or 1.0),
    )
    return settings, [until] if isinstance(until, str) else list(until)


def _cut(answer: str, until: Sequence[str]) -> str:
    """The answer up to the first stop string."""
    for stop in until:
        if stop and stop in answer:
            answer = answer[: answer.index(stop)]
    return answer.strip()


# The lmms_eval.models entry point's payload (pyproject.toml).
MANIFEST = ModelManifest(model_id="videovlm", simple_class_path="videovlm.integrations.lmms_eval.VideovlmLMM")
