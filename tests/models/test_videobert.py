"""VideoBERT family: MLM + alignment, freezing, golden values, save/load, visual words, template filling."""

from __future__ import annotations

import copy

import pytest
import torch

from videovlm.models import IGNORE_INDEX, ProcessorError, VideoBertModel, load_pretrained, set_trainable
from videovlm.models.presets import tiny_videobert

from .conftest import qa_and_caption_batch

GOLDEN_LOSS = 5.3391432762146  # both rows as positives: MLM + alignment
GOLDEN_ALIGN = [0.10165, 0.13260]
TEMPLATE = "what colour is the circle? [MASK]"


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    return tiny_videobert(tokenizer=tokenizer, num_visual_words=8).eval()


@pytest.fixture(scope="module")
def batch(model, frames):
    return qa_and_caption_batch(model, frames)


def test_processor_items(model, batch):
    tok = model.tokenizer
    qa_ids, qa_labels = batch["input_ids"][0], batch["labels"][0]
    assert qa_ids[0] == tok.cls_token_id
    targets = qa_labels != IGNORE_INDEX
    assert (qa_ids[targets] == tok.mask_token_id).all() and tok.decode(qa_labels[targets]) == "red"
    caption_targets = batch["labels"][1] != IGNORE_INDEX
    assert tok.decode(batch["labels"][1][caption_targets]) == "a red circle moves to the left."
    assert torch.equal(model.processor("a red circle")["labels"], model.processor.text("a red circle")["labels"])
    with pytest.raises(ProcessorError, match="exactly one"):
        model.processor.fill("no mask here", "red")


def test_forward_backward_default_pattern(model, batch):
    set_trainable(model, model.DEFAULT_TRAINABLE)
    model.train()
    out = model(**batch)
    text_len, frames = batch["input_ids"].shape[1], batch["frame_mask"].shape[1]
    assert out.logits.shape == (2, text_len + frames + 1, model.visual_word_offset + 8)
    assert torch.isfinite(out.mlm_loss) and torch.isfinite(out.alignment_loss)
    out.loss.backward()
    grads = {n: any(p.grad is not None for p in part.parameters()) for n, part in model.parts().items()}
    assert grads == {"vision": False, "bert": True, "alignment_head": True}
    model.zero_grad(set_to_none=True)
    model.eval()


def test_golden_loss_and_alignment(model, batch):
    with torch.no_grad():
        out = model(**batch, alignment_labels=torch.ones(2))
    assert out.loss.item() == pytest.approx(GOLDEN_LOSS, rel=1e-4)
    assert out.alignment_logits.tolist() == pytest.approx(GOLDEN_ALIGN, abs=1e-4)


def test_masked_modelling_only_where_the_video_belongs_to_the_text(model, batch):
    """Rows paired with another video (alignment negatives) carry no MLM targets: a caption
    word predicted next to the wrong video would teach the model to ignore the video. They are
    still masked, or the masks would give the alignment away (measured: 50.5% alignment)."""
    with torch.no_grad():
        negatives = model(**batch, alignment_labels=torch.zeros(2))
        positives = model(**batch, alignment_labels=torch.ones(2))
    assert negatives.mlm_loss is None and torch.isfinite(negatives.alignment_loss)
    assert torch.isfinite(positives.mlm_loss)
    # Both rows are masked alike: [MASK] in the input says nothing about alignment.
    assert torch.equal(negatives.alignment_logits, positives.alignment_logits)


def test_visual_words_from_pixels_or_cached_features(model, batch, tmp_path):
    model = copy.deepcopy(model)  # the codebook changes below; keep the shared fixture intact
    pixels = batch["pixel_values"]
    vectors, mask = model.frame_vectors(pixels, batch["frame_mask"])  # (B, T, D)
    words = model.visual_word_ids(vectors)
    assert words.shape == (2, 8) and ((words >= model.visual_word_offset) & (words < model.visual_word_offset + 8)).all()
    assert torch.equal(mask, batch["frame_mask"])
    # the tower's output (what the feature cache stores) gives the same vectors and the same loss
    with torch.no_grad():
        features = model.vision(pixels)  # (B, T, N, D)
        cached, _ = model.frame_vectors(frame_features=features)
        assert torch.equal(cached, vectors)
        rest = {k: v for k, v in batch.items() if k != "pixel_values"}
        assert model(frame_features=features, **rest).loss.item() == pytest.approx(model(**batch).loss.item(), rel=1e-6)
    with pytest.raises(ValueError, match="exactly one of pixel_values .* got both"):
        model.frame_vectors(pixels, frame_features=features)
    with pytest.raises(ValueError, match="got none"):
        model(input_ids=batch["input_ids"])
    with pytest.raises(ValueError, match=r"frame_features: expected \(B, T, N, D\)"):
        model.frame_vectors(frame_features=features[:, :, 0])
    # each vector maps to its nearest codebook row: the rows themselves, shuffled, map back to their ids
    order = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    ids = model.visual_word_ids(model.visual_words[order].unsqueeze(0) + 1e-4)
    assert ids.tolist() == [(order + model.visual_word_offset).tolist()]
    # the fitted codebook is saved with the weights
    model.save_pretrained(tmp_path)
    loaded = load_pretrained(tmp_path)
    assert isinstance(loaded, VideoBertModel) and torch.equal(loaded.visual_words, model.visual_words)
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)


def test_forecasting_reads_only_the_first_clips(model, batch):
    """next_word_logits: the next clip's word from the words before it and nothing else."""

    def video(ids):  # frame features that are exactly the codebook rows `ids` (B, T)
        return model.visual_words[torch.tensor(ids)].unsqueeze(2)  # (B, T, 1, D)

    words = [[0, 1, 2, 3, 4, 5, 6, 7], [7, 6, 5, 4, 3, 2, 1, 0]]
    logits, truth = model.next_word_logits(context=4, frame_features=video(words))
    assert logits.shape == (2, model.config.num_visual_words) and truth.tolist() == [4, 3]
    # the clips from `context` on (the answer and what follows) never reach the model
    later = [row[:4] + [1, 1, 1, 1] for row in words]
    assert torch.equal(model.next_word_logits(context=4, frame_features=video(later))[0], logits)
    # the context does
    earlier = [[5, 5, 5, 5] + row[4:] for row in words]
    assert not torch.equal(model.next_word_logits(context=4, frame_features=video(earlier))[0], logits)
    # a padded target clip has no truth (-1); pixels give the words of their features
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 4:] = False
    assert model.next_word_logits(context=4, frame_features=video(words), frame_mask=mask)[1].tolist() == [4, -1]
    pixels = batch["pixel_values"]
    with torch.no_grad():
        from_pixels = model.next_word_logits(context=3, pixel_values=pixels)
        cached = model.next_word_logits(context=3, frame_features=model.vision(pixels))
    assert torch.equal(cached[0], from_pixels[0]) and torch.equal(cached[1], from_pixels[1])
    for bad in (0, 8):
        with pytest.raises(ValueError, match=rf"context: must be in \[1, 7\] for 8 clips, got {bad}"):
            model.next_word_logits(context=bad, frame_features=video(words))


def test_template_filling_learns_the_answer(tokenizer, frames):
    torch.manual_seed(0)
    bert = tiny_videobert(tokenizer=tokenizer, num_visual_words=8)
    set_trainable(bert, bert.DEFAULT_TRAINABLE)
    item = bert.processor.fill(TEMPLATE, "green", frames=frames[:4])
    batch = bert.processor.collate([item])
    optimizer = torch.optim.AdamW([p for p in bert.parameters() if p.requires_grad], lr=1e-3)
    bert.train()
    for _ in range(10):
        optimizer.zero_grad()
        bert(**batch).loss.backward()
        optimizer.step()
    bert.eval()
    scores = bert.score_candidates(pixel_values=batch["pixel_values"], templates=[TEMPLATE], candidates=["red", "green", "blue"])
    assert scores.shape == (1, 3) and scores.argmax().item() == 1
    probability = bert.alignment_score(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"])
    assert probability.shape == (1,) and 0.0 < probability.item() < 1.0


def test_bad_video_inputs(model, batch):
    with pytest.raises(ValueError, match=r"frame_mask: expected bool \(B, T\) = \(2, 8\), got torch.int64 \(2, 8\)"):
        model(**{**batch, "frame_mask": batch["frame_mask"].long()})
    with pytest.raises(ValueError, match=r"pixel_values: expected \(B, T, C, H, W\), got \(2, 3, 112, 112\)"):
        model(**{**batch, "pixel_values": batch["pixel_values"][:, 0]})
    with pytest.raises(ValueError, match="32 frames but max_frames is 16"):
        model(**{**batch, "pixel_values": batch["pixel_values"].repeat(1, 4, 1, 1, 1), "frame_mask": None})


def test_export_bert(model, tmp_path):
    from transformers import AutoModelForMaskedLM

    model.export_language_model(tmp_path)
    plain = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    ids = torch.tensor([[model.tokenizer.cls_token_id, model.visual_word_offset + 3, model.tokenizer.sep_token_id]])
    with torch.no_grad():
        assert torch.equal(plain(input_ids=ids).logits, model.bert(input_ids=ids).logits)
