"""Tiny pretrained backbones made from the synthetic data (``recipes/backbones/*.yaml``).

No checkpoint can be downloaded here, so these recipes play the role of the hub:

- ``labelled_tower``: the tiny convolutional vision tower (an HF ``ResNetModel``), trained on
  the renderer's per-object labels as a detection-pretrained tower would be
  (``conv_tower.yaml``; what the tiny video recipes freeze);
- ``contrastive``: a CLIP-style contrastive image-text model (``clip.yaml``; its tiny ViT);
- ``text``: text-pretrained tiny causal (Llama), masked (BERT) and seq2seq (BART) language
  models (``llm.yaml``, ``bert.yaml``, ``bart.yaml``).

Each saves a *plain Hugging Face checkpoint* (plus the tokenizer for the language sides, and a
``preprocessor_config.json`` for the vision towers), so the video recipes load them exactly like
hub checkpoints: ``tiny_videollama(tokenizer=DIR, vision=TOWER_DIR, llm=LLM_DIR)``.

The tokenizer is trained on the synthetic training corpus with the deterministic
``videovlm.models.train_tokenizer``: every backbone built from the same corpus has the same
vocabulary, so any of their folders serves as the tokenizer of a video recipe.
"""

from videovlm.train.backbones.contrastive import (
    PREPROCESSOR_FILE,
    ContrastiveImageText,
    ContrastiveOutput,
    ImageTextProcessor,
    build_tiny_clip,
    image_text_retrieval,
    tiny_clip,
)
from videovlm.train.backbones.labelled_tower import (
    FrameLabels,
    LabelledTower,
    RenderedFrameDataset,
    SplitFrameDataset,
    frame_labels,
    tiny_resnet_tower,
)
from videovlm.train.backbones.text import (
    ChatCorpusDataset,
    Objective,
    SceneChatDataset,
    TextBackbone,
    TextCorpusDataset,
    TextProcessor,
    build_text_backbone,
    corpus_tokenizer,
    grounded_chat_texts,
    pretrained_text_backbone,
    tiny_text_backbone,
)

__all__ = [
    "PREPROCESSOR_FILE",
    "ChatCorpusDataset",
    "ContrastiveImageText",
    "ContrastiveOutput",
    "FrameLabels",
    "ImageTextProcessor",
    "LabelledTower",
    "Objective",
    "RenderedFrameDataset",
    "SceneChatDataset",
    "SplitFrameDataset",
    "TextBackbone",
    "TextCorpusDataset",
    "TextProcessor",
    "build_text_backbone",
    "build_tiny_clip",
    "corpus_tokenizer",
    "frame_labels",
    "grounded_chat_texts",
    "image_text_retrieval",
    "tiny_clip",
    "tiny_resnet_tower",
    "pretrained_text_backbone",
    "tiny_text_backbone",
]
