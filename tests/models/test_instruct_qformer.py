"""The instruction-aware video Q-Former (InstructBLIP's Q-Former over Video-LLaMA's frame tokens):
the processor makes the instruction inputs, the instruction changes the video tokens, gradients
reach its word embeddings, generation, save/load and the cached-feature path agree, and wrong
inputs get errors that name them."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from videovlm.data.formats import VideoCaption, VideoQA
from videovlm.models import ProcessorError, VideoLlamaProcessor, load_pretrained
from videovlm.models.presets import tiny_videollama
from videovlm.models.temporal import InstructVideoQFormer, TemporalInputError
from videovlm.models.tokenizer import VIDEO_TOKEN

INSTRUCT = {"_component_": "videovlm.models.temporal.InstructVideoQFormer", "num_queries": 4, "max_frames": 8, "num_layers": 2, "num_heads": 4}


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    return tiny_videollama(tokenizer=tokenizer, temporal=INSTRUCT, max_frames=8).eval()


def qa(question: str, answer: str) -> VideoQA:
    return VideoQA(video_id="v0", video=Path("v0.mp4"), question=question, answer=answer, type="color")


def test_processor_adds_the_human_turns_as_the_instruction(model, tokenizer):
    processor = model.processor
    assert isinstance(processor, VideoLlamaProcessor) and processor.instruction
    item = processor(qa("what colour is the circle?", "red"))
    words = tokenizer("what colour is the circle?", add_special_tokens=False)["input_ids"]
    assert item["instruction_ids"].tolist() == [tokenizer.bos_token_id, *words]  # no <video>, no answer
    caption = processor(VideoCaption("v1", Path("v1.mp4"), "a red circle moves to the left.", 2.0))
    prompt = processor.template.video_prompt.replace(VIDEO_TOKEN, "").strip()
    assert caption["instruction_ids"].tolist() == [tokenizer.bos_token_id, *tokenizer(prompt, add_special_tokens=False)["input_ids"]]
    batch = processor.collate([item, caption], padding_side="left")
    assert batch["instruction_ids"].shape == batch["instruction_mask"].shape
    assert batch["instruction_mask"].sum(1).tolist() == [len(words) + 1, caption["instruction_ids"].numel()]
    with pytest.raises(ProcessorError, match="max_instruction_tokens=64"):
        processor(qa(" ".join(["what colour is the circle?"] * 20), "red"))
    plain = tiny_videollama(tokenizer=tokenizer, max_frames=8)
    assert "instruction_ids" not in plain.processor(qa("what colour is the circle?", "red"))  # a question-blind encoder gets none


def test_the_instruction_steers_the_video_tokens_and_trains_its_embeddings(model, frames):
    processor = model.processor
    batch = processor.collate([processor(qa("what colour is the circle?", "red"), frames=frames[:6]), processor(qa("which way does the star move?", "left"), frames=frames)])
    swapped = {**batch, "instruction_ids": batch["instruction_ids"].flip(0), "instruction_mask": batch["instruction_mask"].flip(0)}
    with torch.no_grad():
        tokens, _ = model.encode_video(batch["pixel_values"], batch["frame_mask"], instruction_ids=batch["instruction_ids"], instruction_mask=batch["instruction_mask"])
        other, _ = model.encode_video(batch["pixel_values"], batch["frame_mask"], instruction_ids=swapped["instruction_ids"], instruction_mask=swapped["instruction_mask"])
    assert tokens.shape == (2, 4, model.llm.config.hidden_size) and not torch.allclose(tokens, other)
    model.train()
    try:
        model.zero_grad()
        model(**batch).loss.backward()
        embeddings = model.temporal.qformer.embeddings.word_embeddings.weight.grad
        used = batch["instruction_ids"][batch["instruction_mask"].bool()].unique()
        assert embeddings is not None and embeddings[used].abs().sum(1).gt(0).all()
    finally:
        model.zero_grad()
        model.eval()


def test_the_instruction_scales_and_shifts_the_frame_channels(model):
    encoder = model.temporal
    torch.manual_seed(1)
    tokens = torch.randn(2, 3, 5, encoder.input_dim)  # (B, T, N, D)
    ids = torch.tensor([[1, 5, 6], [1, 7, 8]])
    mask = torch.ones_like(ids)
    assert torch.equal(encoder.modulate(tokens, ids, mask), tokens)  # zero init: the identity
    film = copy.deepcopy(encoder)
    torch.nn.init.normal_(film.instruction_film.weight)
    out = film.modulate(tokens, ids, mask)
    shifted = film.modulate(tokens + 1.0, ids, mask)
    scale = shifted - out  # (1 + scale) per sample and channel, the same for every token
    assert torch.allclose(scale, scale[:, :1, :1].expand_as(scale), atol=1e-5)
    assert not torch.allclose(scale[0], scale[1])  # another instruction, other channels
    # Pad positions of the instruction (mask 0) do not change its summary.
    padded = film.modulate(tokens, torch.cat([ids, torch.full((2, 2), 9)], 1), torch.cat([mask, torch.zeros(2, 2, dtype=torch.long)], 1))
    assert torch.allclose(padded, out, atol=1e-6)


def test_padding_the_instruction_changes_nothing(model, frames):
    processor = model.processor
    item = processor(qa("what colour is the circle?", "red"), frames=frames[:6])
    longer = processor(qa("which way does the blue star move in this video?", "left"), frames=frames[:6])
    alone = processor.collate([item])
    padded = processor.collate([item, longer])  # right padding: item's instruction gets pad positions
    with torch.no_grad():
        a = model(**alone).logits[0]
        b = model(**padded).logits[0, : a.shape[0]]
    assert torch.allclose(a, b, atol=1e-5)
    # Generation prompts are left-padded; the instruction is still padded at its end, so a
    # question's video tokens do not depend on the other questions of its batch.
    prompts = [processor.prompt("what colour is the circle?", frames=frames[:6]), processor.prompt("which way does the blue star move in this video?", frames=frames[:6])]
    left = processor.collate(prompts, padding_side="left")
    assert left["instruction_mask"][0, 0] == 1 and left["instruction_mask"][0, -1] == 0
    with torch.no_grad():
        one = processor.collate(prompts[:1], padding_side="left")
        alone_tokens, _ = model.encode_video(one["pixel_values"], one["frame_mask"], instruction_ids=one["instruction_ids"], instruction_mask=one["instruction_mask"])
        batch_tokens, _ = model.encode_video(left["pixel_values"], left["frame_mask"], instruction_ids=left["instruction_ids"], instruction_mask=left["instruction_mask"])
    assert torch.allclose(alone_tokens[0], batch_tokens[0], atol=1e-5)


def test_generate_save_load_and_cached_features_agree(model, frames, tmp_path):
    processor = model.processor
    prompts = processor.collate([processor.prompt("what colour is the circle?", frames=frames[:5]), processor.prompt("which way?", frames=frames)], padding_side="left")
    out = model.generate(**prompts, max_new_tokens=3)
    with torch.no_grad():
        logits = model(**prompts).logits
        assert torch.equal(out[:, 0], logits[:, -1].argmax(-1))
        model.save_pretrained(tmp_path / "m")
        loaded = load_pretrained(tmp_path / "m").eval()
        assert isinstance(loaded.temporal, InstructVideoQFormer) and loaded.processor.instruction
        assert torch.equal(loaded(**prompts).logits, logits)
        # Cached tower output in place of pixels: the same video tokens.
        features = model.vision(prompts["pixel_values"])  # (B, T, N, D)
        instruction = {"instruction_ids": prompts["instruction_ids"], "instruction_mask": prompts["instruction_mask"]}
        direct, _ = model.encode_video(prompts["pixel_values"], prompts["frame_mask"], **instruction)
        cached, _ = model.encode_video(frame_mask=prompts["frame_mask"], frame_features=features, **instruction)
    assert torch.equal(direct, cached)


def test_instruction_errors_name_what_is_wrong(model, tokenizer, frames):
    encoder = model.temporal
    tokens = torch.zeros(1, 2, 50, encoder.input_dim)
    with pytest.raises(TemporalInputError, match="needs instruction_ids"):
        encoder(tokens)
    with pytest.raises(TemporalInputError, match="outside the vocabulary"):
        encoder(tokens, instruction_ids=torch.tensor([[len(tokenizer) + 5]]))
    with pytest.raises(TemporalInputError, match="does not match"):
        encoder(tokens, instruction_ids=torch.tensor([[1, 2]]), instruction_mask=torch.ones(1, 3))
    with pytest.raises(TemporalInputError, match=r"integer \(B=1, L\)"):
        encoder(tokens, instruction_ids=torch.ones(2, 3, dtype=torch.long))
    plain = tiny_videollama(tokenizer=tokenizer, max_frames=8)
    batch = plain.processor.collate([plain.processor(qa("what colour is the circle?", "red"), frames=frames[:2])])
    with pytest.raises(ValueError, match="does not read an instruction"):
        plain(**batch, instruction_ids=torch.ones(1, 3, dtype=torch.long))
