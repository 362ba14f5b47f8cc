"""``VideoQA``: load a trained model once, then ask questions about videos.

    from videovlm.qa import VideoQA
    vqa = VideoQA.from_pretrained("runs/tiny/finetune/final")
    vqa.qa("clip.mp4", "what colour is the circle?")          # -> "red"
    vqa.qa(frames_uint8_THW3, "which shape moved first?")       # decoded frames work too
    chat = vqa.chat("clip.mp4"); chat.ask("what is shown?"); chat.ask("and then?")

Works for the three families (see ``videovlm.qa.families``). Generation uses the language
side's KV cache; many questions are answered in batches (``qa_batch``), and a question whose
video cannot be decoded gets an error result instead of stopping the batch.
"""

from __future__ import annotations

import os

import json
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from videovlm.qa.families import Answerer, ChatTurn, Prompt, answerer_for
from videovlm.qa.frames import (
    QAInputError,
    SampledFrames,
    VideoInput,
    blank_sampled_frames,
    checked_decode_size,
    load_frames,
    model_decode_size,
    model_sampler_spec,
    timestamp_prefix,
)
from videovlm.qa.generation import GenerationSettings
from videovlm.video.types import VideoDecodeError

# Errors that belong to one question (its video, its text), not to the run: batch mode
# records them on that question's line and carries on.
ITEM_ERRORS = (VideoDecodeError, QAInputError, OSError, ValueError)
# Decoded videos kept while answering a batch (questions about one video usually come together).
FRAME_CACHE_SIZE = 16


@dataclass(frozen=True)
class QARequest:
    """One question of a batch: the video (path or frames) and the question text.

    ``blank_frames``: ask about black frames of the video's decoded shape instead of its
    picture (the blank control of ``videovlm eval --control blank``); the video is still
    decoded, so a broken video fails the same way and the frame count and size are real.
    """

    video: VideoInput
    question: str
    blank_frames: bool = False


@dataclass(frozen=True)
class BatchOptions:
    """How many questions are answered together, and how.

    Fields: batch_size (questions per generate call), settings (decoding), timestamps (frame
    times in each prompt), candidates (VideoBERT: the answers to choose from; None = template
    filling).
    """

    batch_size: int = 8
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    timestamps: bool = False
    candidates: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.batch_size < 1:
            raise QAInputError(f"batch_size: must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class QAResult:
    """The answer, or why there is none (``error``: exception type and message)."""

    answer: str | None
    error: str | None = None


DTYPES = {"auto": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` = the CUDA device of this process (``LOCAL_RANK`` under torchrun, else the
    first) if there is one, else the CPU."""
    if str(device) == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    try:
        resolved = torch.device(device)
    except RuntimeError as e:
        raise QAInputError(f"device: {e}") from e
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise QAInputError(f"device: {device!r} requested but CUDA is not available here (use --device cpu)")
    return resolved


def _decode_size(value, model) -> int | tuple[int, int] | None:
    """``VideoQA``'s ``decode_size``: ``auto`` -> the processor's resize target."""
    if value == "auto":
        from videovlm.models.pixels import decode_target

        pixel = getattr(getattr(model, "processor", None), "pixel", None)
        if pixel is None:
            raise QAInputError(f"decode_size: auto needs a model whose processor has pixel settings; {type(model).__name__} has none")
        return decode_target(pixel)
    return checked_decode_size(value)


class VideoQA:
    """A loaded model plus its sampler and processor, reused across questions."""

    def __init__(self, model, *, sampler: str, device: str | torch.device = "cpu", backend: str = "auto", decode_size=None):
        """``decode_size``: what the decoder scales frames to (a short side, (height, width),
        or ``auto``: the size the model's processor resizes to); None: full size."""
        from videovlm.video.samplers import parse_sampler

        if getattr(model, "hf_device_map", None) is not None:  # placed across devices by accelerate (``dispatch``)
            from videovlm.qa.dispatch import input_device

            self.device, self.model = input_device(model), model.eval()
        else:
            self.device = resolve_device(device)
            self.model = model.to(self.device).eval()
        self.answerer: Answerer = answerer_for(self.model)
        self.sampler_spec = sampler
        self.sampler = parse_sampler(sampler)
        self.backend = backend
        self.decode_size = _decode_size(decode_size, self.model)

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path,
        *,
        sampler: str | None = None,
        device: str | torch.device = "cpu",
        backend: str = "auto",
        dtype: str = "auto",
        max_visual_tokens: int | None = None,
        decode_size=None,
        device_map: str | None = None,
        max_memory: dict | None = None,
        offload_folder: str | Path | None = None,
    ) -> VideoQA:
        """Load any family saved with ``save_pretrained`` (``videovlm.models.load_pretrained``).
        ``sampler`` defaults to the one the model folder records, else ``uniform:8``.
        ``dtype``: ``auto`` keeps the saved dtypes; ``bfloat16`` / ``float16`` / ``float32``
        casts the whole model (the frames are cast to each part's dtype as they go in).
        ``max_visual_tokens`` (without ``sampler``): sample ``uniform:T`` with T the most frames
        whose video tokens fit the budget (``videovlm.qa.budget``). ``decode_size`` defaults
        to the one the model was trained with (``model_decode_size``). ``device_map``
        (``auto``, ``balanced`` or ``sequential``; instead of ``device``): place a model too large
        for one device across the GPUs, the CPU and, with ``offload_folder``, the disk, within
        ``max_memory`` ({0: "20GiB", "cpu": "60GiB"}), with accelerate (``videovlm.qa.dispatch``)."""
        from videovlm.models import load_pretrained

        if dtype not in DTYPES:
            raise QAInputError(f"dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise QAInputError(f"model: {model_dir} is not a folder (expected one written by save_pretrained)")
        model = load_pretrained(model_dir)
        if DTYPES[dtype] is not None:
            model = model.to(DTYPES[dtype])
        if device_map is not None:
            from videovlm.qa.dispatch import dispatch

            model = dispatch(model, device_map=device_map, max_memory=max_memory, offload_folder=offload_folder)
        elif max_memory is not None or offload_folder is not None:
            raise QAInputError("max_memory and offload_folder (--max-memory, --offload-folder) place a model with device_map; give device_map (--device-map) too")
        if sampler is None and max_visual_tokens is not None:
            from videovlm.qa.budget import frames_for_budget

            try:
                sampler = f"uniform:{frames_for_budget(model, max_visual_tokens)}"
            except ValueError as e:
                raise QAInputError(str(e)) from None
        spec = sampler or model_sampler_spec(model_dir, max_frames=getattr(model.config, "max_frames", None))
        size = decode_size if decode_size is not None else model_decode_size(model_dir)
        return cls(model, sampler=spec, device=device, backend=backend, decode_size=size)

    @property
    def family(self) -> str:
        return self.model.MODEL_TYPE

    # -- frames and prompts ------------------------------------------------------------
    def frames(self, video: VideoInput, *, times: Sequence[float] | None = None) -> SampledFrames:
        """The frames the model sees for ``video`` (sampled with this instance's sampler)."""
        return load_frames(video, sampler=self.sampler, backend=self.backend, times=times, decode_size=self.decode_size)

    def prompt(self, question: str, frames: SampledFrames, *, timestamps: bool = False, history: Sequence[ChatTurn] = ()) -> Prompt:
        if not isinstance(question, str) or not question.strip():
            raise QAInputError(f"question: expected a non-empty string, got {question!r}")
        if timestamps and not history:
            # Frame times go with the first question, next to the video they describe.
            question = f"{timestamp_prefix(frames.times, source=frames.source)} {question}"
        return self.answerer.prompt(question, frames, history)

    def answer_prompts(
        self, prompts: Sequence[Prompt], *, settings: GenerationSettings | None = None, streamer=None, candidates=None
    ) -> list[str]:
        """Answer prompts in one batch (batched generation; left padding for causal LLMs)."""
        settings = settings or GenerationSettings()
        self.answerer.check_settings(settings, streaming=streamer is not None)
        batch = self.answerer.collate(prompts, self.device)
        with torch.inference_mode():
            return self.answerer.answer(prompts, batch, settings, streamer=streamer, candidates=candidates)

    # -- public questions -------------------------------------------------------------
    def qa(
        self,
        video: VideoInput,
        question: str,
        *,
        settings: GenerationSettings | None = None,
        timestamps: bool = False,
        times: Sequence[float] | None = None,
        candidates: Sequence[str] | None = None,
        streamer=None,
    ) -> str:
        """Answer one question about a video file or uint8 frames ``(T, H, W, 3)``.

        ``timestamps`` puts the frame times in the prompt (``times`` gives them for raw
        frames); ``candidates`` (VideoBERT) are the answers to choose from; ``streamer`` is a
        transformers streamer (e.g. ``videovlm.qa.generation.terminal_streamer``)."""
        prompt = self.prompt(question, self.frames(video, times=times), timestamps=timestamps)
        return self.answer_prompts([prompt], settings=settings, streamer=streamer, candidates=candidates)[0]

    __call__ = qa

    def caption(self, video: VideoInput, *, settings: GenerationSettings | None = None) -> str:
        """A caption of the video with the family's captioning prompt (Video-LLaMA, VideoOFA)."""
        prompt = self.answerer.caption_prompt(self.frames(video))
        return self.answer_prompts([prompt], settings=settings)[0]

    def chat(self, video: VideoInput, *, settings: GenerationSettings | None = None, timestamps: bool = False) -> ChatSession:
        """A multi-turn conversation about one video (Video-LLaMA)."""
        if not self.answerer.supports_chat:
            raise QAInputError(f"chat: {type(self.model).__name__} answers single questions; multi-turn chat needs a Video-LLaMA model")
        return ChatSession(self, self.frames(video), settings=settings or GenerationSettings(), timestamps=timestamps)

    def qa_batch(self, requests: Sequence[QARequest], *, options: BatchOptions | None = None, captions: bool = False) -> list[QAResult]:
        """Answer many questions; see ``iter_batches`` (this collects its results in order)."""
        return [result for chunk in self.iter_batches(requests, options=options, captions=captions) for result in chunk]

    def iter_batches(
        self, requests: Sequence[QARequest], *, options: BatchOptions | None = None, captions: bool = False
    ) -> Iterator[list[QAResult]]:
        """Results of ``requests`` in order, one list per batch of ``options.batch_size`` questions.

        A question whose video is missing or undecodable (or whose prompt is too long) gets
        ``QAResult(None, error)``; the rest of its batch is answered normally. ``captions``
        asks for a caption of each video instead (``question`` is ignored).
        """
        options = options or BatchOptions()
        settings, candidates = options.settings, options.candidates
        self.answerer.check_settings(settings, streaming=False)  # a bad option fails the run, not each item
        cache: OrderedDict[str, SampledFrames] = OrderedDict()
        batch_size = options.batch_size
        for start in range(0, len(requests), batch_size):
            chunk = requests[start : start + batch_size]
            results: list[QAResult | None] = [None] * len(chunk)
            prompts: dict[int, Prompt] = {}
            for i, request in enumerate(chunk):
                try:
                    frames = self._cached_frames(request.video, cache)
                    if request.blank_frames:
                        frames = blank_sampled_frames(frames)
                    prompts[i] = self.answerer.caption_prompt(frames) if captions else self.prompt(request.question, frames, timestamps=options.timestamps)
                except ITEM_ERRORS as e:
                    results[i] = _error(e)
            for i, result in self._answer_isolated(prompts, settings, candidates).items():
                results[i] = result
            yield [r for r in results if r is not None]

    def _cached_frames(self, video: VideoInput, cache: OrderedDict[str, SampledFrames]) -> SampledFrames:
        if not isinstance(video, (str, Path)):
            return self.frames(video)
        key = str(video)
        if key not in cache:
            cache[key] = self.frames(video)
            while len(cache) > FRAME_CACHE_SIZE:
                cache.popitem(last=False)
        cache.move_to_end(key)
        return cache[key]

    def _answer_isolated(self, prompts: dict[int, Prompt], settings, candidates) -> dict[int, QAResult]:
        """Answer the prompts together; if the batch fails, answer them one by one so only
        the questions that fail get an error."""
        if not prompts:
            return {}
        keys = list(prompts)
        try:
            answers = self.answer_prompts([prompts[k] for k in keys], settings=settings, candidates=candidates)
            return {k: QAResult(a) for k, a in zip(keys, answers)}
        except ITEM_ERRORS as e:
            if len(keys) == 1:
                return {keys[0]: _error(e)}
        results = {}
        for k in keys:
            try:
                results[k] = QAResult(self.answer_prompts([prompts[k]], settings=settings, candidates=candidates)[0])
            except ITEM_ERRORS as e:
                results[k] = _error(e)
        return results


def _error(error: Exception) -> QAResult:
    return QAResult(None, f"{type(error).__name__}: {error}")


@dataclass
class ChatSession:
    """A conversation about one video: each ``ask`` sees the earlier questions and answers."""

    qa: VideoQA
    frames: SampledFrames
    settings: GenerationSettings
    timestamps: bool = False
    history: list[ChatTurn] = field(default_factory=list)

    def ask(self, question: str, *, streamer=None) -> str:
        prompt = self.qa.prompt(question, self.frames, timestamps=self.timestamps, history=self.history)
        answer = self.qa.answer_prompts([prompt], settings=self.settings, streamer=streamer)[0]
        # History keeps the question as asked (with the timestamp prefix on the first turn).
        self.history.append(ChatTurn(prompt.text, answer))
        return answer

    def transcript(self) -> str:
        return json.dumps([{"question": t.question, "answer": t.answer} for t in self.history], ensure_ascii=False, indent=1)
