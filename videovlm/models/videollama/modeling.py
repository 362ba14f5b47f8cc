"""Video-LLaMA: vision tower (+ image Q-Former) -> frame positions + video Q-Former -> projector -> LLM.

Batch keys: ``pixel_values (B, T, C, H, W)``, ``frame_mask (B, T)`` (optional, True = real
frame), ``input_ids``/``attention_mask``/``labels (B, L)`` from ``VideoLlamaProcessor`` with one
``<video>`` (or ``<image>``) placeholder per row. The placeholder is replaced by the M video
tokens (``splice_visual_tokens``), so the LLM sees L + M - 1 positions.

Vision tower: ViT-style (CLIP, SigLIP, ViT) or convolutional (ConvNeXt, ConvNeXt V2, ResNet).
Its frame tokens ``(B, T, N, D)`` are CLIP's CLS + patch grid, or a conv tower's pooled vector
+ the h*w cells of its last feature map (row-major; ``select="patch"`` drops the first token);
the image Q-Former and the attention encoders read either as a set of tokens, and a grid
encoder (``SpatialPool``, ``Conv3dDownsample``) needs ``has_cls_token: true`` when the first
token is there. See ``videovlm.models.vision_backbones`` and docs/architecture.md.

Parts (for ``set_trainable``): ``vision``, ``image_qformer`` (optional), ``frame_position``
(the temporal encoder's learned frame embedding, the same module object), ``temporal``
(the temporal encoder, swappable by ``_component_``: the video Q-Former by default, or any
other, e.g. ``MeanPool``; called ``video_qformer`` before, which old checkpoints still load), ``projector``, ``llm``; plus ``lora``.
The paper's pattern trains the frame positions, the video Q-Former and the projector.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from videovlm.models.base import (
    frame_limit,
    temporal_defaults,
    IGNORE_INDEX,
    VideoFamilyModel,
    check_frame_features,
    check_video_inputs,
    splice_visual_tokens,
    to_module_dtype,
)
from videovlm.models.language import (
    apply_lora,
    build_language_model,
)
from videovlm.models.projector import Projector
from videovlm.models.qformer import ImageQFormer
from videovlm.models.tokenizer import IMAGE_TOKEN, VIDEO_TOKEN, load_tokenizer, token_id
from videovlm.models.temporal.spec import build_temporal_encoder, temporal_spec
from videovlm.models.videollama.configuration import VideoLlamaConfig
from videovlm.models.videollama.processing import VideoLlamaProcessor
from videovlm.models.vision import VisionTower

class VideoLlamaModel(VideoFamilyModel):
    MODEL_TYPE = "videollama"
    CONFIG_CLASS = VideoLlamaConfig
    PROCESSOR_CLASS = VideoLlamaProcessor
    PART_NAMES = ("vision", "image_qformer", "frame_position", "temporal", "projector", "llm")
    # The paper's pattern: frame positions, video Q-Former, projection (the frame positions
    # live inside the temporal encoder, when it has them, and train with it).
    DEFAULT_TRAINABLE = ("temporal", "projector")
    # Before the part held any temporal encoder it was called ``video_qformer``.
    RENAMED_PARTS = {"video_qformer": "temporal"}
    LANGUAGE_FIELD = "llm"

    def __init__(self, config: VideoLlamaConfig, *, tokenizer=None):
        super().__init__()
        self.config = config
        self.tokenizer = load_tokenizer(tokenizer, source=config.tokenizer or config.llm.pretrained, where="videollama")
        self.vision = VisionTower(config.vision)
        frame_dim = self.vision.hidden_size
        self.image_qformer = None
        if config.image_qformer is not None:
            self.image_qformer = ImageQFormer(config.image_qformer, vision_dim=frame_dim)
            frame_dim = self.image_qformer.hidden_size
        self.temporal = build_temporal_encoder(config.temporal, input_dim=frame_dim, vocab_size=len(self.tokenizer), defaults=temporal_defaults(config))
        llm = build_language_model(config.llm, vocab_size=len(self.tokenizer))
        self.projector = Projector(config.projector, input_dim=self.temporal.output_dim, output_dim=llm.config.hidden_size)
        self.llm = apply_lora(llm, config.lora) if config.lora is not None else llm
        self.placeholder_ids = (
            token_id(self.tokenizer, VIDEO_TOKEN, where="tokenizer"),
            token_id(self.tokenizer, IMAGE_TOKEN, where="tokenizer"),
        )
        self.processor = self.PROCESSOR_CLASS.from_config(config, tokenizer=self.tokenizer, pixel=self.vision.pixel)

    @property
    def frame_position(self) -> nn.Module | None:
        """The temporal encoder's learned frame embedding (None for encoders without one, e.g. mean)."""
        return getattr(self.temporal, "frame_position", None)

    def saved_fields(self) -> dict[str, Any]:
        qformer = self.config.image_qformer
        if qformer is not None:
            qformer = dataclasses.replace(qformer, pretrained=None, hf_config=self.image_qformer.qformer.config.to_dict())
        return {"temporal": temporal_spec(self.temporal), "image_qformer": qformer}

    # -- forward ------------------------------------------------------------------------
    def encode_video(
        self,
        pixel_values: torch.Tensor | None = None,
        frame_mask: torch.Tensor | None = None,
        *,
        frame_features: torch.Tensor | None = None,
        query_features: torch.Tensor | None = None,
        **instruction: torch.Tensor,
    ):
        """Video tokens in LLM space (B, M, D_llm) and their mask (B, M) from exactly one of:
        ``pixel_values (B, T, C, H, W)``; ``frame_features (B, T, N, D_vis)``, the vision
        tower's output (a feature cache of the frozen tower); ``query_features (B, T, Q, D_q)``,
        the image Q-Former's output (a cache of a frozen tower and Q-Former). As transformers'
        ``pixel_values`` / ``inputs_embeds``: each later input skips the parts before it.
        ``instruction``: ``instruction_ids`` / ``instruction_mask`` (B, L) for a temporal encoder
        that reads them (``reads_instruction``; the processor makes them), else nothing."""
        video, name = _one_video_input(pixel_values=pixel_values, frame_features=frame_features, query_features=query_features)
        max_frames = frame_limit(self.config)
        if name == "pixel_values":
            frame_mask = check_video_inputs(video, frame_mask, max_frames=max_frames)
            tokens = self.vision(video)  # (B, T, N, D_vis)
        else:
            frame_mask = check_frame_features(video, frame_mask, max_frames=max_frames, name=name)
            tokens = video  # (B, T, N, D_vis) or (B, T, Q, D_q)
        if name == "query_features" and self.image_qformer is None:
            raise ValueError("query_features: this model has no image Q-Former (give frame_features, the vision tower's output)")
        if self.image_qformer is not None and name != "query_features":
            tokens = self.image_qformer(to_module_dtype(tokens, self.image_qformer))  # (B, T, Q, D_q)
        reads = getattr(self.temporal, "reads_instruction", False)
        if instruction and not reads:
            raise ValueError(f"instruction_ids given, but the temporal encoder {type(self.temporal).__name__} does not read an instruction")
        video_tokens = self.temporal(to_module_dtype(tokens, self.temporal), frame_mask, **instruction)  # (B, M, D_t), (B, M)
        return self.projector(to_module_dtype(video_tokens.tokens, self.projector)), video_tokens.mask  # (B, M, D_llm), (B, M)

    def _llm_inputs(self, video: dict[str, Any], input_ids, attention_mask, labels, frame_mask, instruction):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        visual, visual_mask = self.encode_video(frame_mask=frame_mask, **video, **instruction)
        text = self.llm.get_input_embeddings()(input_ids)  # (B, L, D_llm)
        embeds, mask, labels = splice_visual_tokens(
            text_embeds=text,
            input_ids=input_ids,
            attention_mask=attention_mask,
            labels=labels,
            visual_tokens=visual,
            visual_mask=visual_mask,
            placeholder_ids=self.placeholder_ids,
        )
        return embeds, mask, labels

    def forward(
        self,
        *,
        input_ids,
        pixel_values=None,
        frame_features=None,
        query_features=None,
        attention_mask=None,
        labels=None,
        frame_mask=None,
        instruction_ids=None,
        instruction_mask=None,
        objective: str = "language_modeling",
    ):
        """The video comes as exactly one of ``pixel_values``, ``frame_features`` or
        ``query_features`` (see ``encode_video``). ``objective``: ``language_modeling`` (the
        LLM's next-token loss on ``labels``, the paper's) or ``answer_readout`` (no LLM forward:
        see ``answer_readout``)."""
        instruction = _instruction(instruction_ids, instruction_mask)
        video = {"pixel_values": pixel_values, "frame_features": frame_features, "query_features": query_features}
        if objective == "answer_readout":
            return self.answer_readout(**video, labels=labels, frame_mask=frame_mask, instruction=instruction)
        if objective != "language_modeling":
            raise ValueError(f"objective: expected 'language_modeling' or 'answer_readout', got {objective!r}")
        embeds, mask, labels = self._llm_inputs(video, input_ids, attention_mask, labels, frame_mask, instruction)
        # Positions count attended tokens only, as generate() does, so training and
        # generation agree for left padding and for masked (padded-frame) video tokens.
        position_ids = (mask.long().cumsum(-1) - 1).clamp(min=0)
        return self.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids, labels=labels)

    def answer_readout(self, *, labels, pixel_values=None, frame_features=None, query_features=None, frame_mask=None, instruction: dict[str, torch.Tensor]):
        """The LLM-free pretraining objective of the video Q-Former (the analogue of BLIP-2's
        stage 1, which trains its Q-Former against the frozen image encoder alone): each of the
        M video tokens, in the LLM's input space, is scored against the frozen LLM's output
        embeddings, and the loss is the mean over tokens of the cross-entropy with the first
        answer token of each row (the first ``labels`` that is not -100, so QA items: one-token
        answers are all of it). ``logits`` are the mean of the tokens' logits (for the linear,
        bias-free output head: the logits of the tokens' mean).

        Why: through the frozen LLM, a question-aware Q-Former learns which object the question
        names far more slowly than with a direct readout (docs/results.md: tiny conv tower,
        val, 1000 steps: exists 59.7% through the LLM vs 97.0% read out). No LLM forward, so a
        step costs a fraction of a language-modelling one. Every token, not only their mean,
        must carry the answer, so the LLM later finds it in whichever token it reads (val,
        after the same stage 2: order 97.8% vs 87.9%, change 65.3% vs 57.3% when only the mean
        was scored). Returns a ``CausalLMOutput`` with ``loss`` and ``logits (B, V)``."""
        from transformers.modeling_outputs import CausalLMOutput

        if labels is None:
            raise ValueError("objective='answer_readout' needs labels (the answer tokens of QA items)")
        answered = labels != IGNORE_INDEX  # (B, L)
        if not bool(answered.any(dim=1).all()):
            rows = (~answered.any(dim=1)).nonzero().flatten().tolist()
            raise ValueError(f"objective='answer_readout': batch row(s) {rows} have no answer token in labels")
        first_answer = labels.gather(1, answered.long().argmax(dim=1, keepdim=True)).squeeze(1)  # (B,)
        video = {"pixel_values": pixel_values, "frame_features": frame_features, "query_features": query_features}
        visual, visual_mask = self.encode_video(frame_mask=frame_mask, **video, **instruction)  # (B, M, D_llm), (B, M)
        head = self.llm.get_output_embeddings()
        token_logits = head(to_module_dtype(visual, head)).float()  # (B, M, V)
        weights = visual_mask.to(token_logits.dtype)  # (B, M)
        targets = first_answer[:, None].expand(-1, token_logits.shape[1])  # (B, M)
        per_token = nn.functional.cross_entropy(token_logits.transpose(1, 2), targets, reduction="none")  # (B, M)
        loss = ((per_token * weights).sum(1) / weights.sum(1).clamp(min=1.0)).mean()
        logits = (token_logits * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp(min=1.0)  # (B, V)
        return CausalLMOutput(loss=loss, logits=logits)

    @torch.no_grad()
    def generate(
        self,
        *,
        input_ids,
        pixel_values=None,
        frame_features=None,
        query_features=None,
        attention_mask=None,
        frame_mask=None,
        instruction_ids=None,
        instruction_mask=None,
        **generate_kwargs: Any,
    ):
        """New token ids (B, L_new) from the LLM's ``generate`` on the spliced prompt (KV cache on).
        Prompts should be left-padded (``processor.collate(items, padding_side="left")``)."""
        instruction = _instruction(instruction_ids, instruction_mask)
        video = {"pixel_values": pixel_values, "frame_features": frame_features, "query_features": query_features}
        embeds, mask, _ = self._llm_inputs(video, input_ids, attention_mask, None, frame_mask, instruction)
        return self.generate_with_language_model(inputs_embeds=embeds, attention_mask=mask, **generate_kwargs)

    def language_model(self) -> nn.Module:
        return self.llm


def _one_video_input(**inputs: torch.Tensor | None) -> tuple[torch.Tensor, str]:
    """The one video input given, and its name; none or several is an error naming them."""
    given = [name for name, value in inputs.items() if value is not None]
    if len(given) != 1:
        names = " / ".join(inputs)
        raise ValueError(f"give exactly one of {names}; got {', '.join(given) if given else 'none'}")
    return inputs[given[0]], given[0]


def _instruction(ids: torch.Tensor | None, mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The instruction keywords for the temporal encoder (none when no ids are given)."""
    if ids is None:
        if mask is not None:
            raise ValueError("instruction_mask given without instruction_ids")
        return {}
    return {"instruction_ids": ids} if mask is None else {"instruction_ids": ids, "instruction_mask": mask}
