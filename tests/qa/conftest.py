"""Fixtures of the QA tests: solid-colour videos, a corrupt one, and micro models of each family.

The micro models use the families' own config classes with backbones far smaller than the
tiny presets (32 px frames, 64-d layers), so a Video-LLaMA overfits two questions in a few
seconds on 2 shared cores. The code path is the one a real checkpoint takes: build, train,
``save_pretrained``, ``VideoQA.from_pretrained``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BartConfig, BertConfig, CLIPVisionConfig, LlamaConfig

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220)}
QUESTION = "what colour is the video?"
CORPUS = [
    "what colour is the video? red blue green",
    "the video is red. the video is blue.",
    "describe the video briefly. what does the video describe?",
    "does the video describe a red video? yes no. are the frames of the video in order?",
]


def micro_vision():
    from videovlm.models import PixelConfig, VisionTowerConfig

    clip = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=16)
    return VisionTowerConfig(hf_config=clip.to_dict(), pixel=PixelConfig(image_size=32))


def micro_language(kind: str, tokenizer):
    from videovlm.models import LanguageModelConfig

    common = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    if kind == "causal":
        hf = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=256, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **common)
    elif kind == "seq2seq":
        hf = BartConfig(d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                        encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=256, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.bos_token_id, forced_eos_token_id=None, **common)
    else:
        hf = BertConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=128, **common)
    return LanguageModelConfig(kind=kind, hf_config=hf.to_dict())


def build_micro(family: str, tokenizer, *, image_qformer: bool = False):
    """A micro model of ``family``; ``image_qformer``: Video-LLaMA with a 1-layer, 2-query BLIP-2 Q-Former per frame."""
    from videovlm.models import (
        ImageQFormerConfig,
        VideoBertConfig,
        VideoBertModel,
        VideoLlamaConfig,
        VideoLlamaModel,
        VideoOFAConfig,
        VideoOFAModel,
    )

    torch.manual_seed(0)
    if family == "videollama":
        temporal = {"_component_": "videovlm.models.temporal.VideoQFormer", "num_queries": 2, "max_frames": 4, "num_layers": 1, "num_heads": 2}
        qformer = ImageQFormerConfig(num_queries=2, hidden_size=64, num_layers=1, num_heads=2, intermediate_size=128) if image_qformer else None
        config = VideoLlamaConfig(vision=micro_vision(), llm=micro_language("causal", tokenizer), temporal=temporal, image_qformer=qformer, max_frames=4)
        return VideoLlamaModel(config, tokenizer=tokenizer)
    if family == "videoofa":
        config = VideoOFAConfig(vision=micro_vision(), seq2seq=micro_language("seq2seq", tokenizer), max_frames=4)
        return VideoOFAModel(config, tokenizer=tokenizer)
    vision = micro_vision()
    vision.select = "pooled"
    config = VideoBertConfig(vision=vision, bert=micro_language("masked", tokenizer), num_visual_words=4, max_frames=4)
    return VideoBertModel(config, tokenizer=tokenizer)


def colour_frames(colour: str, count: int = 6) -> np.ndarray:
    frames = np.zeros((count, 48, 48, 3), dtype=np.uint8)
    frames[:] = COLOURS[colour]
    return frames


@pytest.fixture(scope="session")
def tokenizer():
    from videovlm.models import train_tokenizer

    return train_tokenizer(CORPUS, vocab_size=120)


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    """One solid-colour video per colour, a corrupt file and a missing path."""
    from videovlm.video.writer import write_video

    folder = tmp_path_factory.mktemp("clips")
    paths = {c: write_video(folder / f"{c}.mp4", list(colour_frames(c)), fps=4) for c in COLOURS}
    corrupt = folder / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    paths["corrupt"] = corrupt
    paths["missing"] = folder / "missing.mp4"
    return paths


@pytest.fixture(scope="session")
def trained_llama(tokenizer, clips, tmp_path_factory) -> Path:
    """A micro Video-LLaMA overfit on two questions (red video -> red, blue -> blue), saved."""
    from videovlm.data.formats import VideoQA as QARecord
    from videovlm.models import set_trainable
    from videovlm.qa import load_frames
    from videovlm.video.samplers import parse_sampler

    model = build_micro("videollama", tokenizer)
    sampler = parse_sampler("uniform:2")
    items = []
    for colour in COLOURS:
        frames = load_frames(clips[colour], sampler=sampler).frames
        record = QARecord(video_id=colour, video=clips[colour], question=QUESTION, answer=colour, type="colour")
        items.append(model.processor(record, frames=frames))
    batch = model.processor.collate(items)
    set_trainable(model, ["temporal", "projector", "llm"])
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    for _ in range(25):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert loss.item() < 0.3, f"micro model did not overfit (loss {loss.item():.3f})"
    folder = tmp_path_factory.mktemp("llama") / "final"
    model.eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def saved_family(tokenizer, tmp_path_factory):
    """Untrained micro VideoOFA / VideoBERT saved to folders (plumbing tests)."""
    made: dict[str, Path] = {}

    def save(family: str) -> Path:
        if family not in made:
            made[family] = build_micro(family, tokenizer).save_pretrained(tmp_path_factory.mktemp(family) / "final")
        return made[family]

    return save
