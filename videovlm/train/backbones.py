"""Tiny pretrained backbones made from the synthetic data (``recipes/backbones/*.yaml``).

No checkpoint can be downloaded here, so these recipes play the role of the hub: a
CLIP-style contrastive image-text model (its vision tower is what the video recipes freeze)
and text-pretrained tiny causal (Llama), masked (BERT) and seq2seq (BART) language models.
Each saves a *plain Hugging Face checkpoint* plus the tokenizer (and, for CLIP, a
``preprocessor_config.json``), so the video recipes load them exactly like hub checkpoints:
``tiny_videollama(tokenizer=DIR, vision=CLIP_DIR, llm=LLM_DIR)``.

The tokenizer is trained on the synthetic training corpus with the deterministic
``videovlm.models.train_tokenizer``: every backbone built from the same corpus has the same
vocabulary, so any of their folders serves as the tokenizer of a video recipe.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import transformers
from torch import nn
from torch.utils.data import Dataset
from transformers import AutoConfig, AutoTokenizer, CLIPConfig, CLIPModel, CLIPTextConfig

from videovlm.models.base import IGNORE_INDEX
from videovlm.models.pixels import CLIP_MEAN, CLIP_STD, PixelConfig, frames_to_pixel_values, pixel_config_from_processor_dict
from videovlm.train.data import item_generator

Objective = Literal["causal", "masked", "seq2seq"]
PREPROCESSOR_FILE = "preprocessor_config.json"


def corpus_tokenizer(corpus: Path, *, vocab_size: int = 2000):
    """The shared tokenizer: trained on every text of the synthetic split folder ``corpus``."""
    from videovlm.data.synthetic import corpus_texts
    from videovlm.models import train_tokenizer

    return train_tokenizer(corpus_texts(corpus), vocab_size=vocab_size)


# --------------------------------------------------------------------------------------
# Text pretraining


class TextProcessor:
    """Text -> training item for one objective.

    ``causal``: ``<s> text </s>``, labels = input ids (the LM shifts them).
    ``masked``: ``[CLS] text [SEP]``, 15% of the words' tokens selected (80% ``[MASK]``, 10%
    random, 10% kept), labels only there (BERT).
    ``seq2seq``: text infilling (BART): one span of ~30% of the tokens becomes one ``[MASK]``
    in the input; the target is the whole text.
    """

    def __init__(self, tokenizer, *, objective: Objective, max_length: int = 64, mask_fraction: float = 0.15, span_fraction: float = 0.3):
        self.tokenizer = tokenizer
        self.objective = objective
        self.max_length = max_length
        self.mask_fraction = mask_fraction
        self.span_fraction = span_fraction

    def __call__(self, text: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
        tok = self.tokenizer
        words = tok(text, add_special_tokens=False)["input_ids"][: self.max_length - 2]
        if not words:
            raise ValueError(f"text {text!r}: no tokens")
        if self.objective == "causal":
            ids = torch.tensor([tok.bos_token_id, *words, tok.eos_token_id])
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
        if self.objective == "masked":
            return self._masked(torch.tensor([tok.cls_token_id, *words, tok.sep_token_id]), generator)
        return self._infill(torch.tensor(words), generator)

    def _masked(self, ids: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        inner = torch.arange(1, len(ids) - 1)  # never the [CLS] / [SEP] ends
        count = max(1, int(round(self.mask_fraction * len(inner))))
        chosen = inner[torch.randperm(len(inner), generator=generator)[:count]]
        labels = torch.full_like(ids, IGNORE_INDEX)
        labels[chosen] = ids[chosen]
        masked = ids.clone()
        roll = torch.rand(len(chosen), generator=generator)
        random_ids = torch.randint(len(self.tokenizer.all_special_ids), len(self.tokenizer), (len(chosen),), generator=generator)
        masked[chosen] = torch.where(roll < 0.8, self.tokenizer.mask_token_id, torch.where(roll < 0.9, random_ids, ids[chosen]))
        return {"input_ids": masked, "attention_mask": torch.ones_like(masked), "labels": labels}

    def _infill(self, words: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        tok = self.tokenizer
        span = max(1, int(round(self.span_fraction * len(words))))
        start = int(torch.randint(0, len(words) - span + 1, (1,), generator=generator))
        source = torch.cat([words[:start], torch.tensor([tok.mask_token_id]), words[start + span :]])
        ids = torch.cat([torch.tensor([tok.bos_token_id]), source, torch.tensor([tok.eos_token_id])])
        labels = torch.cat([words, torch.tensor([tok.eos_token_id])])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


class TextBackbone(nn.Module):
    """A Hugging Face LM + its tokenizer; ``save_pretrained`` writes a plain HF checkpoint."""

    def __init__(self, model: transformers.PreTrainedModel, tokenizer, *, objective: Objective):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.objective = objective
        # 96 tokens: a grounded chat line (caption + question + answer, ChatCorpusDataset) fits whole.
        self.processor = TextProcessor(tokenizer, objective=objective, max_length=96)

    def forward(self, **batch: torch.Tensor):
        return self.model(**batch)

    def gradient_checkpointing_enable(self) -> None:
        self.model.gradient_checkpointing_enable()

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> TextBackbone:
        config = AutoConfig.from_pretrained(directory)
        architecture = (config.architectures or [""])[0]
        objective = _OBJECTIVE_OF.get(architecture)
        if objective is None:
            raise ValueError(f"{directory}/config.json: architecture {architecture!r} is not one of {sorted(_OBJECTIVE_OF)}")
        model = getattr(transformers, architecture).from_pretrained(str(directory))
        return cls(model, AutoTokenizer.from_pretrained(str(directory)), objective=objective)


_OBJECTIVE_OF: dict[str, Objective] = {"LlamaForCausalLM": "causal", "BertForMaskedLM": "masked", "BartForConditionalGeneration": "seq2seq"}


def tiny_text_backbone(*, corpus: Path, objective: Objective, vocab_size: int = 2000) -> TextBackbone:
    """A fresh tiny LM of the video presets' size (Llama / BERT / BART) with the corpus tokenizer."""
    return build_text_backbone(corpus_tokenizer(corpus, vocab_size=vocab_size), objective=objective)


def build_text_backbone(tokenizer, *, objective: Objective) -> TextBackbone:
    from videovlm.models import presets

    builders = {
        "causal": (transformers.LlamaForCausalLM, presets.tiny_llama_config),
        "masked": (transformers.BertForMaskedLM, presets.tiny_bert_config),
        "seq2seq": (transformers.BartForConditionalGeneration, presets.tiny_bart_config),
    }
    if objective not in builders:
        raise ValueError(f"objective: expected one of {sorted(builders)}, got {objective!r}")
    model_class, make_config = builders[objective]
    return TextBackbone(model_class(make_config(tokenizer=tokenizer)), tokenizer, objective=objective)


class TextCorpusDataset(Dataset):
    """The distinct texts of a synthetic split folder, one item each, through the model's
    ``TextProcessor``; masking/infilling noise is seeded by (seed, epoch, index)."""

    def __init__(self, *, split_dir: Path, processor: TextProcessor, train: bool = True, seed: int = 0, limit: int | None = None):
        texts = self.read_texts(split_dir, processor)
        self.texts = texts if limit is None else texts[:limit]
        self.processor = processor
        self.seed = seed
        self.train = train
        self.pad_values = {"input_ids": processor.tokenizer.pad_token_id}

    def read_texts(self, split_dir: Path, processor: TextProcessor) -> list[str]:
        from videovlm.data.synthetic import corpus_texts

        return list(dict.fromkeys(t for t in corpus_texts(split_dir) if t.strip()))

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key
        # Validation uses epoch 0's noise every time, so its loss is comparable across runs.
        return self.processor(self.texts[index], item_generator(self.seed, epoch if self.train else 0, index))


def grounded_chat_texts(split_dir: str | Path) -> list[str]:
    """One single-turn conversation per video question of a synthetic split, in the Video-LLaMA
    chat template with the video's caption where the video will be::

        ###Human: {caption} {question}###Assistant: {answer}

    (``TextProcessor`` adds ``<s>`` and ``</s>``, so the ids match ``VideoLlamaProcessor``'s
    rendering of the same turn with the caption in place of ``<video>``.)"""
    from videovlm.data.formats import read_qa_json, read_webvid_csv
    from videovlm.models.tokenizer import ASSISTANT_MARKER, HUMAN_MARKER

    split_dir = Path(split_dir)
    captions = {r.video_id: r.caption for r in read_webvid_csv(split_dir / "captions.csv", check_files=False)}
    texts = []
    for item in read_qa_json(split_dir / "qa.json", check_files=False):
        if item.video_id not in captions:
            raise ValueError(f"{split_dir / 'qa.json'}: video {item.video_id!r} has no caption in captions.csv")
        texts.append(f"{HUMAN_MARKER} {captions[item.video_id]} {item.question}{ASSISTANT_MARKER} {item.answer}")
    return texts


class ChatCorpusDataset(TextCorpusDataset):
    """Text-grounded conversations (``grounded_chat_texts``) for the causal LM: the tiny
    analogue of the chat tuning that makes Vicuna, Video-LLaMA's LLM, a chat model. A frozen
    LLM that has never seen the ``###Human:`` / ``###Assistant:`` template, nor answered a
    question about what precedes it, cannot learn either from a few soft video tokens."""

    def read_texts(self, split_dir: Path, processor: TextProcessor) -> list[str]:
        if processor.objective != "causal":
            raise ValueError(f"ChatCorpusDataset: needs a causal LM (objective 'causal'), got {processor.objective!r}")
        return grounded_chat_texts(split_dir)


# --------------------------------------------------------------------------------------
# Contrastive image-text pretraining (CLIP)


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


def main(argv: list[str] | None = None) -> int:
    """``python -m videovlm.train.backbones retrieval MODEL_DIR IMAGE_CAPTIONS_JSON``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m videovlm.train.backbones")
    sub = parser.add_subparsers(dest="command", required=True)
    retrieval = sub.add_parser("retrieval", help="zero-shot image<->text R@1/5/10 of a contrastive backbone")
    retrieval.add_argument("model_dir", type=Path)
    retrieval.add_argument("image_captions_json", type=Path)
    args = parser.parse_args(argv)
    print(json.dumps(image_text_retrieval(args.model_dir, args.image_captions_json), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
