"""Retrieval recall from a score matrix and the CLIPScore-style video-text score."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from videovlm.eval.clipscore import HFClipCore, video_clip_score
from videovlm.eval.retrieval import retrieval_ranks, retrieval_recall

# texts 0 and 1 describe video 0, text 2 video 1, text 3 video 2
TEXT_TO_VIDEO = [0, 0, 1, 2]
SCORES = torch.tensor(
    [
        [0.9, 0.1, 0.2],  # rank 1
        [0.5, 0.5, 0.1],  # tie with video 1 -> ranked behind it: rank 2
        [0.3, 0.2, 0.8],  # two videos score higher: rank 3
        [0.1, 0.1, 0.7],  # rank 1
    ]
)


def test_retrieval_ranks_with_ties_and_multiple_captions():
    t2v, v2t = retrieval_ranks(SCORES, TEXT_TO_VIDEO)
    assert t2v.tolist() == [1, 2, 3, 1]
    # video 0: best caption 0.9, nothing else >= -> 1; video 1: caption 0.2, text 1 has 0.5 -> 2;
    # video 2: caption 0.7, text 2 has 0.8 -> 2
    assert v2t.tolist() == [1, 2, 2]
    result = retrieval_recall(SCORES, TEXT_TO_VIDEO, ks=(1, 2, 5))
    assert result.text_to_video == {1: 0.5, 2: 0.75, 5: 1.0}
    assert result.video_to_text == pytest.approx({1: 1 / 3, 2: 1.0, 5: 1.0})
    assert result.text_to_video_median_rank == 1.5 and result.video_to_text_median_rank == 2.0


def test_constant_scores_give_worst_ranks():
    result = retrieval_recall(torch.zeros(3, 3), [0, 1, 2], ks=(1, 3))
    assert result.text_to_video == {1: 0.0, 3: 1.0}
    assert result.video_to_text == {1: 0.0, 3: 1.0}


def test_retrieval_input_errors():
    with pytest.raises(ValueError, match="3 entries for 4 texts"):
        retrieval_ranks(SCORES, [0, 1, 2])
    with pytest.raises(ValueError, match=r"must be in \[0, 3\)"):
        retrieval_ranks(SCORES, [0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"videos \[2\] have no caption"):
        retrieval_ranks(SCORES, [0, 0, 1, 1])
    nan_scores = SCORES.clone()
    nan_scores[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN .first at text 2, video 1"):
        retrieval_ranks(nan_scores, TEXT_TO_VIDEO)


class WordVectorCore(nn.Module):
    """A tiny contrastive core: images are 2-pixel vectors, texts are fixed word vectors."""

    WORDS = {"right": 0, "up": 1, "down": 2}

    def __init__(self) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.words = nn.Embedding(3, 2)
        with torch.no_grad():
            self.words.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]))

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.flatten(pixel_values)  # (B, C*H*W) = (B, 2)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return self.words(torch.tensor([self.WORDS[t] for t in texts]))


def test_video_clip_score_hand_computed():
    frames = torch.tensor(
        [
            [[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0]],  # vs "right": cos 1, 1/sqrt2, (padding)
            [[0.0, 1.0], [1.0, 0.0], [0.0, -1.0]],  # vs "down": cos -1 -> 0, 0, 1
        ]
    ).reshape(2, 3, 2, 1, 1)  # (B, T, C, H, W)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    scores = video_clip_score(WordVectorCore(), pixel_values=frames, texts=["right", "down"], frame_mask=mask)
    assert scores.tolist() == pytest.approx([2.5 * (1 + 1 / math.sqrt(2)) / 2, 2.5 / 3])
    with pytest.raises(ValueError, match="2 texts for 1 videos"):
        video_clip_score(WordVectorCore(), pixel_values=frames[:1], texts=["right", "up"])
    with pytest.raises(ValueError, match="at least one real frame"):
        video_clip_score(WordVectorCore(), pixel_values=frames, texts=["up", "up"], frame_mask=torch.zeros(2, 3, dtype=torch.bool))


def test_hf_clip_core_matches_clip_feature_api():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "a", "red", "circle", "moves", "left"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]")
    config = CLIPConfig(
        text_config=dict(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16, eos_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=16),
        projection_dim=16,
    )
    model = CLIPModel(config).eval()
    core = HFClipCore(model, tokenizer)
    pixels = torch.randn(2, 3, 3, 32, 32)  # (B, T, C, H, W)
    texts = ["a red circle moves left", "a circle"]
    scores = video_clip_score(core, pixel_values=pixels, texts=texts)
    with torch.no_grad():
        image = model.get_image_features(pixel_values=pixels.flatten(0, 1)).pooler_output.reshape(2, 3, -1)
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        text = model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).pooler_output
    expected = (2.5 * torch.cosine_similarity(image, text[:, None], dim=-1).clamp(min=0)).mean(dim=1)
    torch.testing.assert_close(scores, expected)
