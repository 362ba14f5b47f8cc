"""VideoOFA family: shapes, freezing, golden values, save/load, export, generate, task items."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from videovlm.data.formats import Conversation, Turn
from videovlm.models import IGNORE_INDEX, VideoOFAModel, VideoOFAProcessor, load_pretrained, set_trainable
from videovlm.models.presets import tiny_videoofa

from .conftest import qa_and_caption_batch

# Re-pinned when VideoOFA's FrameAdapter gave way to the shared temporal slot (SpatialPool,
# stride 2, frame positions before the projection; was 4.872318744659424 / [0.0, -0.49669,
# -0.03415, -0.85331]): a different module, so different random weights and outputs.
GOLDEN_LOSS = 4.865864276885986
GOLDEN_LOGITS = [0.0, -0.49388, -0.00362, -0.83545]


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    return tiny_videoofa(tokenizer=tokenizer, temporal={"_component_": "videovlm.models.temporal.SpatialPool", "stride": 2, "keep_cls_token": True}).eval()


@pytest.fixture(scope="module")
def batch(model, frames):
    return qa_and_caption_batch(model, frames)


def test_forward_backward_default_pattern(model, batch):
    set_trainable(model, model.DEFAULT_TRAINABLE)
    model.train()
    out = model(**batch)
    assert out.logits.shape == (2, batch["labels"].shape[1], len(model.tokenizer))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = {n: any(p.grad is not None for p in part.parameters()) for n, part in model.parts().items()}
    assert grads == {"vision": False, "temporal": True, "seq2seq": True}
    model.zero_grad(set_to_none=True)
    model.eval()
    # 7x7 patches pooled by 2 -> 4x4 + CLS = 17 tokens per frame, then the instruction
    embeds, mask = model.encoder_inputs(batch["pixel_values"], batch["input_ids"], batch["attention_mask"], batch["frame_mask"])
    assert embeds.shape[:2] == mask.shape == (2, 8 * 17 + batch["input_ids"].shape[1])
    assert not mask[0, 6 * 17 : 8 * 17].any() and mask[1, : 8 * 17].all()  # padded frames of sample 0 are masked
    long_text = torch.ones(2, 1024 - 8 * 17 + 1, dtype=torch.long)
    with pytest.raises(ValueError, match="1025 positions but the language model has max_position_embeddings=1024"):
        model.encoder_inputs(batch["pixel_values"], long_text)


def test_old_frame_adapter_config_is_refused_by_name():
    from videovlm.models import ModelConfigError, VideoOFAConfig, config_from_dict

    old = {"vision": {"pretrained": "v"}, "seq2seq": {"kind": "seq2seq", "pretrained": "s"}, "temporal": {"spatial_pool": 2, "dropout": 0.0}}
    with pytest.raises(ModelConfigError, match=r"FrameAdapter of VideoOFA checkpoints .*SpatialPool, stride: N"):
        config_from_dict(VideoOFAConfig, old)


def test_temporal_encoder_fills_widths_and_is_swappable(tokenizer, batch):
    torch.manual_seed(0)
    model = tiny_videoofa(tokenizer=tokenizer, temporal={"_component_": "videovlm.models.temporal.MeanPool"})
    assert type(model.temporal.encoder).__name__ == "MeanPool" and model.temporal.encoder.output_dim == 256
    assert torch.isfinite(model(**batch).loss)
    from videovlm.models import ModelConfigError

    with pytest.raises(ModelConfigError, match="temporal.input_dim: 64 but the frame tokens are 128-d"):
        tiny_videoofa(tokenizer=tokenizer, temporal={"_component_": "videovlm.models.temporal.SpatialPool", "input_dim": 64})


def test_golden_loss_and_logits(model, batch):
    with torch.no_grad():
        out = model(**batch)
    assert out.loss.item() == pytest.approx(GOLDEN_LOSS, rel=1e-4)
    assert out.logits[1, 0, :4].tolist() == pytest.approx(GOLDEN_LOGITS, abs=1e-4)


def test_save_load_and_export(model, batch, tmp_path):
    from transformers import AutoModelForSeq2SeqLM

    model.save_pretrained(tmp_path / "ofa")
    loaded = load_pretrained(tmp_path / "ofa")
    assert isinstance(loaded, VideoOFAModel)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)
    assert isinstance(VideoOFAProcessor.from_pretrained(tmp_path / "ofa"), VideoOFAProcessor)
    model.export_language_model(tmp_path / "bart")
    plain = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "bart").eval()
    ids = batch["input_ids"]
    with torch.no_grad():
        expected = model.seq2seq(input_ids=ids, attention_mask=batch["attention_mask"], labels=batch["labels"]).logits
        assert torch.equal(plain(input_ids=ids, attention_mask=batch["attention_mask"], labels=batch["labels"]).logits, expected)


def test_generate_matches_forward(model, frames):
    p = model.processor
    prompts = p.collate([p.prompt("what colour is the circle?", frames=frames[:3]), p.prompt("what does the video describe?", frames=frames)], padding_side="left")
    out = model.generate(**prompts, max_new_tokens=3)
    start = model.seq2seq.config.decoder_start_token_id
    assert out.shape[0] == 2 and (out[:, 0] == start).all()
    with torch.no_grad():
        logits = model(**prompts, decoder_input_ids=torch.full((2, 1), start)).logits
    assert torch.equal(out[:, 1], logits[:, 0].argmax(-1))


def test_task_items(model, frames):
    p = model.processor
    match = p.matching("a red circle moves to the left.", matches=False, frames=frames[:2])
    assert model.tokenizer.decode(match["labels"], skip_special_tokens=True) == "no"
    assert "does the video describe" in model.tokenizer.decode(match["input_ids"])
    order = p.frame_order(frames[:4], reverse=True)
    assert torch.equal(order["pixel_values"], p.frames_to_pixel_values(frames[:4].flip(0))[0])
    assert model.tokenizer.decode(order["labels"], skip_special_tokens=True) == "no"
    conv = Conversation("c", Path("c.mp4"), "video", (Turn("human", "<video> what colour is the star?"), Turn("gpt", "blue")))
    item = p(conv)
    assert model.tokenizer.decode(item["labels"], skip_special_tokens=True) == "blue"
    assert "<video>" not in model.tokenizer.decode(item["input_ids"])
    assert (item["labels"] != IGNORE_INDEX).all()
    assert torch.equal(p("what colour is the star?")["input_ids"], p.prompt("what colour is the star?")["input_ids"])
