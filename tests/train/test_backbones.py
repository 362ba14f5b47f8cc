"""Backbone pretraining pieces: text objectives, plain-HF save/load, the CLIP core and its
loading as a video recipe's vision tower, zero-shot retrieval (no DeepSpeed: fast)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import BertForMaskedLM, CLIPVisionModel

from videovlm.models import train_tokenizer
from videovlm.models.base import IGNORE_INDEX
from videovlm.models.vision import VisionTower, VisionTowerConfig
from videovlm.train.backbones import (
    ContrastiveImageText,
    TextBackbone,
    TextProcessor,
    build_text_backbone,
    build_tiny_clip,
    image_text_retrieval,
    pretrained_text_backbone,
)
from videovlm.train.data import PadCollator

SENTENCES = [
    f"a {c} {s} moves to the {d}" for c in ("red", "green", "blue", "yellow") for s in ("circle", "square", "star") for d in ("left", "right")
] + ["what colour is the star ?", "how many objects are there ?", "yes", "no"]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(SENTENCES, vocab_size=200)


def test_text_objectives(tokenizer):
    text = "a red circle moves to the left"
    words = tokenizer(text, add_special_tokens=False)["input_ids"]
    causal = TextProcessor(tokenizer, objective="causal")(text, torch.Generator().manual_seed(0))
    assert causal["input_ids"].tolist() == [tokenizer.bos_token_id, *words, tokenizer.eos_token_id]
    assert torch.equal(causal["labels"], causal["input_ids"])

    masked_processor = TextProcessor(tokenizer, objective="masked", mask_fraction=0.3)
    masked = masked_processor(text, torch.Generator().manual_seed(1))
    again = masked_processor(text, torch.Generator().manual_seed(1))
    assert all(torch.equal(masked[k], again[k]) for k in masked)  # seeded noise: reproducible
    chosen = (masked["labels"] != IGNORE_INDEX).nonzero().flatten().tolist()
    assert len(chosen) == 2 and 0 not in chosen and len(words) + 1 not in chosen  # never [CLS]/[SEP]
    assert masked["labels"][chosen].tolist() == [words[i - 1] for i in chosen]

    infill = TextProcessor(tokenizer, objective="seq2seq")(text, torch.Generator().manual_seed(2))
    assert (infill["input_ids"] == tokenizer.mask_token_id).sum() == 1
    assert infill["labels"].tolist() == [*words, tokenizer.eos_token_id]
    assert len(infill["input_ids"]) == len(words) + 2 - 2 + 1  # a 2-token span (30% of 7) became one [MASK]


def test_text_backbone_saves_a_plain_hf_checkpoint(tokenizer, tmp_path):
    torch.manual_seed(0)
    backbone = build_text_backbone(tokenizer, objective="masked")
    batch = PadCollator({"input_ids": tokenizer.pad_token_id})(
        [backbone.processor(t, torch.Generator().manual_seed(i)) for i, t in enumerate(SENTENCES[:4])]
    ).inputs
    loss = backbone(**batch).loss
    assert torch.isfinite(loss)
    backbone.save_pretrained(tmp_path)
    plain = BertForMaskedLM.from_pretrained(tmp_path).eval()  # what a video recipe's `bert:` loads
    reloaded = TextBackbone.from_pretrained(tmp_path).eval()
    backbone.eval()
    assert reloaded.objective == "masked"
    with torch.no_grad():
        expected = backbone(**batch).logits
        assert torch.equal(plain(**{k: v for k, v in batch.items() if k != "labels"}).logits, expected)
        assert torch.equal(reloaded(**batch).logits, expected)
    # What a recipe that continues this backbone starts from (llm_copy.yaml after llm.yaml).
    continued = pretrained_text_backbone(directory=tmp_path).eval()
    with torch.no_grad():
        assert continued.objective == "masked" and torch.equal(continued(**batch).logits, expected)
    with pytest.raises(FileNotFoundError, match="no config.json; expected a text backbone folder"):
        pretrained_text_backbone(directory=tmp_path / "missing")


def _write_images(root, count: int) -> list[dict]:
    rng = np.random.default_rng(0)
    colours = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40)}
    entries = []
    for i, (name, rgb) in enumerate(list(colours.items())[:count]):
        image = rng.integers(200, 255, size=(112, 112, 3), dtype=np.uint8)
        image[40:70, 40:70] = rgb
        Image.fromarray(image).save(root / f"img{i}.png")
        entries.append({"id": f"img{i}", "image": f"img{i}.png", "caption": f"a {name} square"})
    (root / "image_captions.json").write_text(json.dumps(entries))
    return entries


def test_clip_core_trains_saves_and_loads_as_a_vision_tower(tokenizer, tmp_path):
    torch.manual_seed(0)
    model = build_tiny_clip(tokenizer)
    entries = _write_images(tmp_path, 4)
    from videovlm.data.formats import read_image_captions_json
    from videovlm.train.data import read_image

    records = read_image_captions_json(tmp_path / "image_captions.json")
    batch = PadCollator({"input_ids": tokenizer.pad_token_id})([model.processor(r, read_image(r.image)) for r in records]).inputs
    assert batch["pixel_values"].shape == (4, 3, 112, 112) and "frame_mask" not in batch
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    first = None
    for _ in range(5):
        loss = model(**batch).loss
        first = first if first is not None else loss.item()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert loss.item() < first  # the in-batch contrastive loss goes down on 4 pairs
    out = tmp_path / "clip"
    model.save_pretrained(out)
    reloaded = ContrastiveImageText.from_pretrained(out)
    assert torch.equal(reloaded.logit_scale, model.logit_scale)
    # A video recipe loads the vision tower from this folder like a hub CLIP checkpoint.
    vision = CLIPVisionModel.from_pretrained(out).eval()
    model.eval()
    with torch.no_grad():
        expected = model.model.get_image_features(pixel_values=batch["pixel_values"]).last_hidden_state
        assert torch.equal(vision(pixel_values=batch["pixel_values"]).last_hidden_state, expected)
    tower = VisionTower(VisionTowerConfig(pretrained=str(out)))
    assert tower.pixel.image_size == 112 and tower.pixel.mean == model.pixel.mean
    result = image_text_retrieval(out, tmp_path / "image_captions.json")
    assert result["images"] == len(entries) and 0.0 <= result["text_to_video"]["R@1"] <= 1.0


def test_grounded_chat_corpus_matches_the_video_llama_template(tokenizer, tmp_path):
    """The LLM's chat corpus renders a question exactly as VideoLlamaProcessor renders the same
    turn with the caption where <video> goes, so the frozen LLM pretrains on its real template."""
    from videovlm.models.pixels import PixelConfig
    from videovlm.models.processing import Turn
    from videovlm.models.videollama import ChatTemplateConfig, VideoLlamaProcessor
    from videovlm.train.backbones import ChatCorpusDataset, grounded_chat_texts

    split = tmp_path / "train"
    split.mkdir()
    (split / "captions.csv").write_text("videoid,name,video\nv0,a red circle moves to the left.,videos/v0.mp4\n")
    qa = [{"video_id": "v0", "video": "videos/v0.mp4", "question": "what colour is the circle?", "answer": "red", "type": "color"},
          {"video_id": "v0", "video": "videos/v0.mp4", "question": "how many objects are there?", "answer": "one", "type": "count"}]
    (split / "qa.json").write_text(json.dumps(qa))
    texts = grounded_chat_texts(split)
    assert texts[0] == "###Human: a red circle moves to the left. what colour is the circle?###Assistant: red"
    chat = ChatCorpusDataset(split_dir=split, processor=TextProcessor(tokenizer, objective="causal", max_length=96))
    assert len(chat) == 2
    video_llama = VideoLlamaProcessor(tokenizer=tokenizer, pixel=PixelConfig(), max_frames=4, template=ChatTemplateConfig())
    ids, _ = video_llama.encode_turns([Turn("human", "a red circle moves to the left. what colour is the circle?"), Turn("gpt", "red")], where="test")
    assert chat[(0, 0)]["input_ids"].tolist() == ids

    with pytest.raises(ValueError, match="needs a causal LM"):
        ChatCorpusDataset(split_dir=split, processor=TextProcessor(tokenizer, objective="masked"))
    qa.append({"video_id": "v9", "video": "videos/v9.mp4", "question": "is it red?", "answer": "yes", "type": "exists"})
    (split / "qa.json").write_text(json.dumps(qa))
    with pytest.raises(ValueError, match="'v9' has no caption"):
        grounded_chat_texts(split)


def test_tiny_clip_patch_size_sets_tokens_per_frame(tokenizer):
    """patch_size=8 gives the tower 196 patches + CLS per 112-px frame (shapes of ~25-px objects
    span 3 patches instead of 1.5); a size that does not divide the image is refused."""
    from videovlm.models.presets import tiny_clip_vision_config

    fine = build_tiny_clip(tokenizer, patch_size=8)
    tokens = fine.model.vision_model(pixel_values=torch.zeros(1, 3, 112, 112)).last_hidden_state
    assert tokens.shape == (1, 197, 128)
    with pytest.raises(ValueError, match="patch_size: must divide the image size 112, got 10"):
        tiny_clip_vision_config(patch_size=10)


def test_scene_chat_is_fresh_grounded_and_labels_answers_only(tokenizer):
    """Each item is a fresh scene's conversation (caption in the first human turn, every question
    asked, labels on the answers only), reproducible from its key, rendered by the Video-LLaMA
    template encoding; min/max_objects bound the scene's objects."""
    from videovlm.data.synthetic.captions import DESCRIBE_PROMPTS
    from videovlm.data.synthetic.scene import SceneConfig
    from videovlm.data.synthetic.vocabulary import SHAPES
    from videovlm.models.videollama import ChatTemplateConfig, encode_chat
    from videovlm.train.backbones import SceneChatDataset

    draft = SceneChatDataset(processor=TextProcessor(tokenizer, objective="causal"), seed=3, min_objects=2, describe_share=1.0)
    texts = [turn.text for index in range(40) for turn in draft.turns(0, index)]
    wide = train_tokenizer(texts, vocab_size=400)  # every word of these conversations is in the vocabulary
    processor = TextProcessor(wide, objective="causal")
    chat = SceneChatDataset(processor=processor, seed=3, min_objects=2, max_objects=3, describe_share=1.0)
    turns = chat.turns(0, 5)
    assert turns == draft.turns(0, 5) and turns != chat.turns(0, 6) and turns != chat.turns(1, 5)
    assert [t.role for t in turns] == ["human", "gpt"] * (len(turns) // 2) and len(turns) >= 6
    describe = next(number for number in range(0, len(turns), 2) if turns[number].text.endswith(DESCRIBE_PROMPTS))
    caption = turns[describe + 1].text  # the describe request is answered by the caption...
    assert turns[0].text.startswith(caption + " ")  # ...which opens the conversation
    assert 2 <= sum(f" {shape}" in caption for shape in SHAPES) <= 3

    item = chat[(0, 5)]
    ids, labels = encode_chat(wide, ChatTemplateConfig(), turns, where="test")
    assert len(ids) <= chat.max_length
    assert item["input_ids"].tolist() == ids and item["labels"].tolist() == labels
    answered = wide.decode([token for token, label in zip(ids, labels) if label != IGNORE_INDEX], skip_special_tokens=True)
    assert answered.split() == " ".join(t.text for t in turns[1::2]).split()  # the answers, and only they, are supervised

    for bad in ({"min_objects": 0}, {"min_objects": 3, "max_objects": 2}, {"max_objects": len(SHAPES) + 1}):
        with pytest.raises(ValueError, match="min_objects <= max_objects"):
            SceneChatDataset(processor=processor, **bad)
    with pytest.raises(ValueError, match="describe_share"):
        SceneChatDataset(processor=processor, describe_share=1.5)
    with pytest.raises(ValueError, match="needs a causal LM"):
        SceneChatDataset(processor=TextProcessor(wide, objective="masked"))
    assert (SceneConfig().min_objects, SceneConfig().max_objects) == (1, 3)  # the data set's scenes are unchanged
