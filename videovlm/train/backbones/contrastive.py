"""CLIP-style contrastive image-text pretraining of the tiny ViT tower (``recipes/backbones/clip.yaml``)
and zero-shot image <-> text retrieval of the result."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoTokenizer, CLIPConfig, CLIPModel, CLIPTextConfig

from videovlm.models.pixels import CLIP_MEAN, CLIP_STD, PixelConfig, frames_to_pixel_values, pixel_config_from_processor_dict
from videovlm.train.backbones.text import corpus_tokenizer

PREPROCESSOR_FILE = "preprocessor_config.json"


class ImageTextProcessor:
    """ImageCaption record + its image ``(1, H, W, 3)`` -> CLIP inputs (pixels ``(3, S, S)``)."""

    def __init__(self, tokenizer, pixel: PixelConfig, *, max_length: int = 64):
        self.tokenizer = tokenizer
        self.pixel = pixel
        self.max_length = max_length

    def text(self, caption: str) -> dict[str, torch.Tensor]:
        tok = self.tokenizer
        words = tok(caption, add_special_tokens=False)["input_ids"][: self.max_length - 2]
        ids = torch.tensor([tok.bos_token_id, *words, tok.eos_token_id])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def __call__(self, record: Any, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        item = self.text(record.caption)
        item["pixel_values"] = frames_to_pixel_values(frames[:1], self.pixel)[0, 0]  # (3, S, S)
        return item


@dataclass
class ContrastiveOutput:
    loss: torch.Tensor
    logits_per_text: torch.Tensor  # (N_text, N_image)


class ContrastiveImageText(nn.Module):
    """HF ``CLIPModel`` trained with the symmetric InfoNCE loss over in-batch pairs."""

    def __init__(self, model: CLIPModel, tokenizer, pixel: PixelConfig):
        super().__init__()
        # DeepSpeed 0.19 cannot broadcast 0-dim parameters (it views them as bytes), so the
        # learned temperature lives here as a (1,) parameter; CLIPModel keeps a 0-dim buffer
        # of the same name that save_pretrained writes, so the checkpoint stays a plain CLIPModel.
        scale = model.logit_scale.detach().clone()
        del model.logit_scale
        model.register_buffer("logit_scale", scale)
        self.logit_scale = nn.Parameter(scale.reshape(1))
        self.model = model
        self.tokenizer = tokenizer
        self.pixel = pixel
        self.processor = ImageTextProcessor(tokenizer, pixel)

    def image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> unit-norm (B, P)."""
        return nn.functional.normalize(self.model.get_image_features(pixel_values=pixel_values).pooler_output, dim=-1)

    def text_embeddings(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) -> unit-norm (B, P), read at the first ``</s>``."""
        return nn.functional.normalize(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output, dim=-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor) -> ContrastiveOutput:
        image = self.image_embeddings(pixel_values)  # (B, P)
        text = self.text_embeddings(input_ids, attention_mask)  # (B, P)
        logits = text @ image.T * self.logit_scale.clamp(max=math.log(100.0)).exp()  # (B_text, B_image)
        targets = torch.arange(len(logits), device=logits.device)
        loss = (nn.functional.cross_entropy(logits, targets) + nn.functional.cross_entropy(logits.T, targets)) / 2
        return ContrastiveOutput(loss=loss, logits_per_text=logits)

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        with torch.no_grad():
            self.model.logit_scale.copy_(self.logit_scale.reshape(()))
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        # What CLIPImageProcessor writes, so the vision tower reads its pixel settings from it.
        side = self.pixel.image_size
        processor = {
            "image_processor_type": "CLIPImageProcessor",
            "do_resize": True,
            "size": {"shortest_edge": side},
            "do_center_crop": True,
            "crop_size": {"height": side, "width": side},
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": True,
            "image_mean": list(self.pixel.mean),
            "image_std": list(self.pixel.std),
            "resample": 3,
        }
        (directory / PREPROCESSOR_FILE).write_text(json.dumps(processor, indent=2))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> ContrastiveImageText:
        directory = Path(directory)
        model = CLIPModel.from_pretrained(str(directory))
        processor = json.loads((directory / PREPROCESSOR_FILE).read_text())
        pixel = pixel_config_from_processor_dict(processor, image_size=model.config.vision_config.image_size)
        return cls(model, AutoTokenizer.from_pretrained(directory), pixel)


def tiny_clip(*, corpus: Path, vocab_size: int = 2000, text_layers: int = 2, patch_size: int = 16) -> ContrastiveImageText:
    """The tiny CLIP: the video presets' vision tower (128-d, 4 layers, 112 px, ``patch_size``
    px patches) + a small text transformer, both projected to 128-d; tokenizer trained on ``corpus``."""
    return build_tiny_clip(corpus_tokenizer(corpus, vocab_size=vocab_size), text_layers=text_layers, patch_size=patch_size)


def build_tiny_clip(tokenizer, *, text_layers: int = 2, patch_size: int = 16) -> ContrastiveImageText:
    from videovlm.models.presets import TINY_IMAGE_SIZE, tiny_clip_vision_config

    text = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=text_layers,
        num_attention_heads=4,
        max_position_embeddings=64,
        projection_dim=128,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,  # the text feature is read at the first </s>
    )
    config = CLIPConfig(text_config=text.to_dict(), vision_config=tiny_clip_vision_config(patch_size=patch_size).to_dict(), projection_dim=128)
    pixel = PixelConfig(image_size=TINY_IMAGE_SIZE, mean=CLIP_MEAN, std=CLIP_STD)
    return ContrastiveImageText(CLIPModel(config), tokenizer, pixel)


def image_text_retrieval(model_dir: str | Path, image_captions_json: str | Path, *, batch_size: int = 32) -> dict[str, Any]:
    """Zero-shot image<->text retrieval (R@1/5/10) of a saved contrastive model on a split's
    image captions: every image against every caption of the split."""
    from videovlm.data.formats import read_image_captions_json
    from videovlm.eval.retrieval import retrieval_recall
    from videovlm.train.data import PadCollator, read_image

    if not (Path(model_dir) / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no config.json (expected the final/ folder of the clip backbone recipe)")
    model = ContrastiveImageText.from_pretrained(model_dir).eval()
    records = read_image_captions_json(image_captions_json)
    collate = PadCollator({"input_ids": model.tokenizer.pad_token_id})
    image_embeds, text_embeds = [], []
    with torch.no_grad():
        for start in range(0, len(records), batch_size):
            chunk = records[start : start + batch_size]
            batch = collate([model.processor(r, read_image(r.image)) for r in chunk]).inputs
            image_embeds.append(model.image_embeddings(batch["pixel_values"]))
            text_embeds.append(model.text_embeddings(batch["input_ids"], batch["attention_mask"]))
    scores = torch.cat(text_embeds) @ torch.cat(image_embeds).T  # (N_text, N_image)
    result = retrieval_recall(scores, list(range(len(records))))
    return {"images": len(records), **result.to_dict()}


