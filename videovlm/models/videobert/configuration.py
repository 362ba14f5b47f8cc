"""VideoBERT's configuration: the family config and the fill-in template of its processor."""

from __future__ import annotations

from dataclasses import dataclass, field

from videovlm.models.base import check_family_config
from videovlm.models.configs import ModelConfigError
from videovlm.models.language import LanguageModelConfig
from videovlm.models.vision import VisionTowerConfig


@dataclass
class BertTemplateConfig:
    """Fields: qa (the fill-in template; ``{question}`` is filled, ``[MASK]`` marks the answer),
    max_length (text tokens including ``[CLS]`` / ``[SEP]``)."""

    qa: str = "{question} answer: [MASK]"
    max_length: int = 64


@dataclass
class VideoBertConfig:
    """Fields:
    vision: the vision tower (``select="pooled"`` gives one feature per frame: CLIP's pooled
        CLS, or a conv tower's pooled vector, ConvNeXt's LayerNorm'd global average of its
        last feature map or ResNet's global average).
    bert: the masked LM (``kind`` must be ``masked``).
    num_visual_words: K, the codebook size (VideoBERT: 20736 from hierarchical k-means).
    mlm_probability: share of text pieces and visual words masked during training.
    alignment_weight: weight of the alignment loss next to the MLM loss.
    template: the QA fill-in template of the processor.
    max_frames: most frames (= visual words) per sample.
    visual_word_offset: id of visual word 0 (None = the tokenizer's size, set when saving).
    tokenizer: tokenizer source when none is passed (None = the BERT checkpoint).
    model_type: always ``videobert``.
    """

    vision: VisionTowerConfig
    bert: LanguageModelConfig
    num_visual_words: int = 256
    mlm_probability: float = 0.15
    alignment_weight: float = 1.0
    template: BertTemplateConfig = field(default_factory=BertTemplateConfig)
    max_frames: int = 16
    visual_word_offset: int | None = None
    tokenizer: str | None = None
    model_type: str = "videobert"

    def __post_init__(self):
        check_family_config(
            family="VideoBERT", lm_field="bert", lm_kind=self.bert.kind, expected_kind="masked", max_frames=self.max_frames
        )
        if self.num_visual_words < 2:
            raise ModelConfigError(f"num_visual_words: must be >= 2, got {self.num_visual_words}")
        if not 0.0 < self.mlm_probability < 1.0:
            raise ModelConfigError(f"mlm_probability: must be in (0, 1), got {self.mlm_probability}")
