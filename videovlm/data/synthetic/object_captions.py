"""Object captions of the synthetic videos: one conversation per object of every video,
"<video> describe the {shape}." answered by the caption of that object alone, derived from
``annotations.jsonl`` (the ground truth the generator wrote), so no new file is needed.

They are the region-level captions of a stage-1 alignment (as grounded captioning data is for
BLIP-2 / InstructBLIP style models): an instruction-aware Q-Former learns from them to render the
object a question names, in the words the frozen LLM already reads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from videovlm.data.formats import Conversation, Turn, read_annotations_jsonl
from videovlm.data.synthetic.captions import make_caption
from videovlm.models.tokenizer import VIDEO_TOKEN

OBJECT_CAPTION_STREAM = 0x6F626A  # "obj": the paraphrase draws, apart from the generator's own
DESCRIBE_OBJECT = "describe the {shape}."


def object_caption_conversations(path: str | Path, *, media_root: str | Path | None = None, seed: int = 0) -> list[Conversation]:
    """One ``Conversation`` per (video, object) of an ``annotations.jsonl``, in file order; the
    caption's paraphrases are drawn from ``[OBJECT_CAPTION_STREAM, seed, video number, object]``."""
    path = Path(path)
    root = Path(media_root) if media_root is not None else path.parent
    conversations = []
    for number, annotation in enumerate(read_annotations_jsonl(path, media_root=media_root, check_files=False)):
        for index, obj in enumerate(annotation.objects):
            rng = np.random.default_rng([OBJECT_CAPTION_STREAM, seed, number, index])
            caption = make_caption(rng, dataclasses.replace(annotation, objects=(obj,)))
            turns = (Turn("human", f"{VIDEO_TOKEN} {DESCRIBE_OBJECT.format(shape=obj.shape)}"), Turn("gpt", caption))
            conversations.append(Conversation(id=f"{annotation.video_id}/{obj.shape}", media=root / annotation.video, media_kind="video", turns=turns))
    return conversations
