"""Video-LLaMA family: shapes, freezing patterns, golden values, save/load, LoRA, generate, processor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from videovlm.data.formats import Conversation, ImageCaption, Turn, VideoQA
from videovlm.models import (
    IGNORE_INDEX,
    LoraSettings,
    PixelShapeError,
    ProcessorError,
    VideoLlamaModel,
    VideoLlamaProcessor,
    load_pretrained,
    set_trainable,
)
from videovlm.models.presets import tiny_videollama


def qa(question: str, answer: str) -> VideoQA:
    return VideoQA(video_id="v0", video=Path("v0.mp4"), question=question, answer=answer, type="color")


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    return tiny_videollama(tokenizer=tokenizer).eval()


@pytest.fixture(scope="module")
def batch(model, frames):
    items = [
        model.processor(qa("what colour is the circle?", "red"), frames=frames[:6]),
        model.processor(qa("which way does the blue star move?", "left"), frames=frames),
    ]
    return model.processor.collate(items)


def grads_by_part(model) -> dict[str, bool]:
    return {name: any(p.grad is not None for p in part.parameters()) for name, part in model.parts().items()}


def test_forward_backward_default_pattern(model, batch):
    set_trainable(model, model.DEFAULT_TRAINABLE)
    model.zero_grad(set_to_none=True)
    model.train()
    out = model(**batch)
    m = model.temporal.num_output_tokens(8, model.vision.tokens_per_frame)
    assert out.logits.shape == (2, batch["input_ids"].shape[1] + m - 1, len(model.tokenizer))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert grads_by_part(model) == {
        "vision": False, "frame_position": True, "temporal": True, "projector": True, "llm": False,
    }  # fmt: skip
    # the frozen parts are kept in eval mode by model.train()
    assert not model.vision.training and not model.llm.training and model.projector.training
    model.zero_grad(set_to_none=True)
    model.eval()


@pytest.mark.parametrize(
    "parts",
    [("projector",), ("vision", "llm"), ("temporal",)],
    ids=["projector-only", "vision+llm", "temporal"],
)
def test_stage_patterns_get_exactly_their_grads(model, batch, parts):
    enabled = set_trainable(model, parts)
    assert enabled == list(parts)
    model(**batch).loss.backward()
    grads = grads_by_part(model)
    # frame_position lives inside the temporal encoder: it trains with it
    expected = {name: name in enabled or (name == "frame_position" and "temporal" in enabled) for name in grads}
    assert grads == expected
    model.zero_grad(set_to_none=True)


def test_frame_position_is_its_own_part(model, batch):
    assert model.frame_position is model.temporal.frame_position
    assert set_trainable(model, ["frame_position"]) == ["frame_position"]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["temporal.frame_position.weight"]
    out = model(**batch)
    out.loss.backward()
    assert model.frame_position.weight.grad is not None
    model.zero_grad(set_to_none=True)


def test_set_trainable_rejects_unknown_parts(model):
    with pytest.raises(ValueError, match="unknown part 'decoder'"):
        set_trainable(model, ["decoder"])
    with pytest.raises(ValueError, match="no LoRA adapters"):
        set_trainable(model, ["lora"])
    with pytest.raises(TypeError, match="sequence of part names"):
        set_trainable(model, "llm")
    with pytest.raises(ValueError, match="'video_qformer' is now called 'temporal' for VideoLlamaModel"):
        set_trainable(model, ["video_qformer", "projector"])
    with pytest.raises(ValueError, match="'image_qformer' named but this VideoLlamaModel has no such part"):
        set_trainable(model, ["image_qformer"])


def test_checkpoints_from_before_the_temporal_rename_load(model, batch, tmp_path):
    """A folder saved when the part was called ``video_qformer`` loads bit-identically."""
    from safetensors.torch import load_file, save_file

    folder = model.save_pretrained(tmp_path / "old")
    weights = load_file(folder / "model.safetensors")
    old = {k.replace("temporal.", "video_qformer.", 1) if k.startswith("temporal.") else k: v for k, v in weights.items()}
    assert any(k.startswith("video_qformer.") for k in old)
    save_file(old, str(folder / "model.safetensors"), metadata={"format": "pt"})
    loaded = load_pretrained(folder)
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)


def test_golden_loss_and_logits(model, batch):
    # Fixed-init values (torchtune style): tiny preset built after torch.manual_seed(0).
    with torch.no_grad():
        out = model(**batch)
    assert out.loss.item() == pytest.approx(GOLDEN_LOSS, rel=1e-4)
    assert out.logits[0, -1, :4].tolist() == pytest.approx(GOLDEN_LOGITS, abs=1e-4)


GOLDEN_LOSS = 4.805119514465332
GOLDEN_LOGITS = [-0.54267, -0.14649, -0.03369, 0.20567]


def test_save_load_bit_identical(model, batch, tmp_path):
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    loaded = load_pretrained(tmp_path)
    assert isinstance(loaded, VideoLlamaModel)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)
    processor = VideoLlamaProcessor.from_pretrained(tmp_path)
    item = processor(qa("what colour is the circle?", "red"))
    assert torch.equal(item["input_ids"], model.processor(qa("what colour is the circle?", "red"))["input_ids"])


def test_save_parameters_that_are_views_of_one_buffer(tokenizer, batch, tmp_path):
    """DeepSpeed ZeRO-1/2 lays the trainable parameters out as views of one flat buffer."""
    torch.manual_seed(0)
    flat_model = tiny_videollama(tokenizer=tokenizer).eval()
    params = list(flat_model.projector.parameters())
    flat = torch.cat([p.detach().flatten() for p in params])
    offset = 0
    for p in params:
        p.data = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    flat_model.save_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(load_pretrained(tmp_path)(**batch).logits, flat_model(**batch).logits)


def test_generate_matches_forward_with_kv_cache(model, frames):
    p = model.processor
    prompts = p.collate([p.prompt("what colour is the circle?", frames=frames[:5]), p.prompt("which way?", frames=frames)], padding_side="left")
    out = model.generate(**prompts, max_new_tokens=4)
    assert out.shape[0] == 2 and 1 <= out.shape[1] <= 4
    # The first generated token is the argmax of a plain forward at the last prompt position.
    with torch.no_grad():
        logits = model(**prompts).logits
    assert torch.equal(out[:, 0], logits[:, -1].argmax(-1))
    assert all(isinstance(t, str) for t in p.decode(out))


def test_lora_grads_and_export(tokenizer, frames, tmp_path):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    lora_model = tiny_videollama(tokenizer=tokenizer, lora=LoraSettings(r=4, alpha=8, dropout=0.0))
    set_trainable(lora_model, [*lora_model.DEFAULT_TRAINABLE, "lora"])
    batch = lora_model.processor.collate([lora_model.processor(qa("what colour?", "red"), frames=frames[:4])])
    lora_model(**batch).loss.backward()
    with_grad = {n for n, p in lora_model.named_parameters() if p.grad is not None}
    llm_grads = {n for n in with_grad if n.startswith("llm.")}
    assert llm_grads and all("lora_" in n for n in llm_grads)
    assert not any(n.startswith("vision.") for n in with_grad)
    # make the adapters non-trivial, then export: the merged plain LLM gives the same logits
    with torch.no_grad():
        for n, p in lora_model.named_parameters():
            if "lora_B" in n:
                p.normal_(std=0.05)
    lora_model.eval()
    lora_model.export_language_model(tmp_path / "llm")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "llm").eval()
    ids = batch["input_ids"][:, :3]
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=ids).logits, lora_model.llm(input_ids=ids).logits, atol=1e-5)
    # and a LoRA model saves / loads bit-identically too
    lora_model.save_pretrained(tmp_path / "full")
    with torch.no_grad():
        assert torch.equal(load_pretrained(tmp_path / "full")(**batch).logits, lora_model(**batch).logits)


def test_processor_masks_human_turns(model):
    conv = Conversation(
        id="c1",
        media=Path("c1.mp4"),
        media_kind="video",
        turns=(Turn("human", "<video>\nwhat colour is the star?"), Turn("gpt", "blue"), Turn("human", "which way does it move?"), Turn("gpt", "up")),
    )
    item = model.processor(conv)
    ids, labels = item["input_ids"], item["labels"]
    trained = labels != IGNORE_INDEX
    assert model.tokenizer.decode(ids[trained]).split() == ["blue", "</s>", "up", "</s>"]
    assert torch.equal(ids[trained], labels[trained])
    text = model.tokenizer.decode(ids)
    assert text.count("<video>") == 1 and "what colour is the star" in text
    assert torch.equal(model.processor("which way?")["input_ids"], model.processor.prompt("<video> which way?")["input_ids"])
    image = model.processor(ImageCaption(id="i1", image=Path("i1.jpg"), caption="a red circle"))
    assert model.tokenizer.convert_tokens_to_ids("<image>") in image["input_ids"].tolist()


def test_bad_inputs_raise_clear_errors(model, frames, batch):
    conv = Conversation(id="c2", media=Path("c2.mp4"), media_kind="video", turns=(Turn("human", "what colour?"), Turn("gpt", "red")))
    with pytest.raises(ProcessorError, match="c2: the first human turn must contain the <video> placeholder"):
        model.processor(conv)
    many = torch.cat([frames, frames, frames])  # 24 frames > max_frames=16
    with pytest.raises(ProcessorError, match="24 frames but the model takes at most max_frames=16"):
        model.processor(qa("what colour?", "red"), frames=many)
    with pytest.raises(PixelShapeError, match=r"expected \(T, H, W, 3\)"):
        model.processor(qa("what colour?", "red"), frames=frames[..., :2])
    with pytest.raises(PixelShapeError, match=r"pixel_values: expected \(B, T, 3, 112, 112\)"):
        model(**{**batch, "pixel_values": batch["pixel_values"][..., :64, :64]})
    with pytest.raises(ProcessorError, match="collate: item 1 has keys"):
        model.processor.collate([model.processor(qa("what colour?", "red")), model.processor.prompt("what colour?")])
    no_placeholder = batch["input_ids"].masked_fill(batch["input_ids"] == model.placeholder_ids[0], 1)
    with pytest.raises(ValueError, match="row 0 has 0 media placeholder tokens"):
        model(**{**batch, "input_ids": no_placeholder})


def test_temporal_encoder_is_swappable(tokenizer, frames):
    torch.manual_seed(0)
    mean = tiny_videollama(tokenizer=tokenizer, temporal={"_component_": "videovlm.models.temporal.MeanPool"})
    assert mean.frame_position is None
    assert set_trainable(mean, mean.DEFAULT_TRAINABLE) == ["temporal", "projector"]
    with pytest.raises(ValueError, match="'frame_position' named but this VideoLlamaModel has no such part"):
        set_trainable(mean, ["frame_position", "temporal", "projector"])
    batch = mean.processor.collate([mean.processor(qa("what colour?", "red"), frames=frames[:3])])
    out = mean(**batch)
    assert out.logits.shape[1] == batch["input_ids"].shape[1] + 50 - 1  # MeanPool keeps the 50 tokens per frame
    with pytest.raises(Exception, match="outside the allowed packages"):
        tiny_videollama(tokenizer=tokenizer, temporal={"_component_": "os.system"})


def test_answer_readout_trains_the_qformer_without_the_llm(model, batch):
    """objective='answer_readout': every video token scored by the frozen LLM's output
    embeddings against each row's first answer token; the LLM's transformer never runs."""
    set_trainable(model, model.DEFAULT_TRAINABLE)
    model.zero_grad(set_to_none=True)
    model.train()
    calls = []
    hook = model.llm.get_input_embeddings().register_forward_hook(lambda *_: calls.append(1))
    try:
        out = model(**batch, objective="answer_readout")
    finally:
        hook.remove()
    assert calls == []  # no LLM forward
    assert out.logits.shape == (2, len(model.tokenizer))
    answers = torch.tensor([model.tokenizer.convert_tokens_to_ids(word) for word in ("red", "left")])
    with torch.no_grad():
        video, _ = model.encode_video(batch["pixel_values"], batch.get("frame_mask"))  # (B, M, D_llm)
        per_token = model.llm.get_output_embeddings()(video)  # (B, M, V)
    expected = torch.stack([torch.nn.functional.cross_entropy(per_token[:, m], answers) for m in range(per_token.shape[1])]).mean()
    torch.testing.assert_close(out.loss, expected)  # the mean over tokens of each token's loss
    torch.testing.assert_close(out.logits, per_token.mean(1))  # not the loss of the mean token
    out.loss.backward()
    assert grads_by_part(model) == {
        "vision": False, "frame_position": True, "temporal": True, "projector": True, "llm": False,
    }  # fmt: skip
    model.zero_grad(set_to_none=True)
    model.eval()
    unanswered = torch.full_like(batch["labels"], IGNORE_INDEX)
    with pytest.raises(ValueError, match=r"row\(s\) \[0, 1\] have no answer token"):
        model(**{**batch, "labels": unanswered}, objective="answer_readout")
    with pytest.raises(ValueError, match="objective: expected 'language_modeling' or 'answer_readout', got 'contrastive'"):
        model(**batch, objective="contrastive")
