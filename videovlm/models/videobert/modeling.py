"""VideoBERT: BERT over ``[CLS] text [SEP] visual words [SEP]``.

Each frame's pooled vision feature is quantised to the nearest of K centroids ("visual
words", fitted by hierarchical k-means over training clips' features in the VideoBERT
recipe, as VideoBERT quantises S3D features);
word k has token id ``visual_word_offset + k`` in BERT's vocabulary, which is extended by K.
Segment (token type) 0 is the text, 1 the video. Losses: masked LM over text and visual
words, plus text-video alignment (a head on ``[CLS]``; in-batch mismatched pairs are the
negatives). Helpers: ``score_candidates`` (template filling: which word fits ``[MASK]``),
``alignment_score`` and ``next_word_logits`` (forecasting the next clip's visual word).

Batch keys: ``pixel_values`` (or ``frame_features``, the tower's cached output), ``frame_mask``, ``input_ids`` / ``attention_mask`` / ``labels``
(from ``VideoBertProcessor``), optional ``alignment_labels (B,)`` (1 = text matches video).
Parts: ``vision``, ``bert`` (with its MLM head), ``alignment_head``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from videovlm.models.base import (
    IGNORE_INDEX,
    VideoFamilyModel,
    check_sequence_length,
    frame_tokens_from,
)
from videovlm.models.language import build_language_model
from videovlm.models.videobert.configuration import VideoBertConfig
from videovlm.models.videobert.processing import VideoBertProcessor
from videovlm.models.tokenizer import load_tokenizer
from videovlm.models.vision import VisionTower


@dataclass
class VideoBertOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (B, L_text + T + 1, V)
    alignment_logits: torch.Tensor | None = None  # (B,)
    mlm_loss: torch.Tensor | None = None
    alignment_loss: torch.Tensor | None = None


class VideoBertModel(VideoFamilyModel):
    MODEL_TYPE = "videobert"
    CONFIG_CLASS = VideoBertConfig
    PROCESSOR_CLASS = VideoBertProcessor
    PART_NAMES = ("vision", "bert", "alignment_head")
    DEFAULT_TRAINABLE = ("bert", "alignment_head")
    LANGUAGE_FIELD = "bert"
    EVAL_MASK_SEED = 1234  # eval-mode masking is fixed so validation losses are comparable

    def __init__(self, config: VideoBertConfig, *, tokenizer=None):
        super().__init__()
        self.config = config
        self.tokenizer = load_tokenizer(tokenizer, source=config.tokenizer or config.bert.pretrained, where="videobert")
        self.vision = VisionTower(config.vision)
        self.bert = build_language_model(config.bert, vocab_size=len(self.tokenizer))
        text_vocab = self.bert.get_input_embeddings().num_embeddings
        self.visual_word_offset = config.visual_word_offset if config.visual_word_offset is not None else text_vocab
        # New rows (the visual words) get the model's own init; mean-resizing would only log.
        self.bert.resize_token_embeddings(self.visual_word_offset + config.num_visual_words, mean_resizing=False)
        self.alignment_head = nn.Linear(self.bert.config.hidden_size, 1)
        # Codebook of visual words; fitted by the recipe's hierarchical k-means, saved with the weights.
        self.register_buffer("visual_words", torch.randn(config.num_visual_words, self.vision.hidden_size))
        self.processor = self.PROCESSOR_CLASS.from_config(config, tokenizer=self.tokenizer, pixel=self.vision.pixel)

    def saved_fields(self) -> dict[str, Any]:
        return {"visual_word_offset": self.visual_word_offset}

    # -- visual words -------------------------------------------------------------------
    def frame_vectors(self, pixel_values=None, frame_mask=None, *, frame_features=None) -> tuple[torch.Tensor, torch.Tensor]:
        """One float32 vector per frame (B, T, D) and the validated bool (B, T) frame mask, from
        exactly one of ``pixel_values (B, T, C, H, W)`` and ``frame_features (B, T, N, D)`` (the
        tower's output, e.g. from the feature cache): the tower's tokens averaged (one token
        when pooled). Quantisation and k-means run in float32 whatever the tower's dtype."""
        tokens, frame_mask = frame_tokens_from(
            self.vision, pixel_values=pixel_values, frame_features=frame_features, frame_mask=frame_mask, max_frames=self.config.max_frames
        )  # (B, T, N, D), (B, T)
        return tokens.float().mean(dim=2), frame_mask  # (B, T, D), (B, T)

    def visual_word_ids(self, vectors: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) of each frame vector's (B, T, D) nearest visual word."""
        codebook = self.visual_words.float().unsqueeze(0).expand(vectors.shape[0], -1, -1)  # (B, K, D)
        nearest = torch.cdist(vectors, codebook).argmin(-1)
        return nearest + self.visual_word_offset  # (B, T)

    # -- forward ------------------------------------------------------------------------
    def _sequence(self, input_ids, attention_mask, words, frame_mask):
        """Concatenate text, visual words and the closing [SEP]: ids, mask, token types, positions."""
        batch = input_ids.shape[0]
        words, frame_mask = words.to(input_ids.device), frame_mask.to(input_ids.device)  # from the tower's device, under a device map
        sep = torch.full((batch, 1), self.tokenizer.sep_token_id, dtype=input_ids.dtype, device=input_ids.device)
        words = words.masked_fill(~frame_mask, self.tokenizer.pad_token_id)
        ids = torch.cat([input_ids, words, sep], dim=1)  # (B, L + T + 1)
        check_sequence_length(ids.shape[1], self.bert.config, what="[CLS] text [SEP] visual words [SEP]")
        mask = torch.cat([attention_mask.bool(), frame_mask, torch.ones_like(sep, dtype=torch.bool)], dim=1)
        types = torch.cat([torch.zeros_like(input_ids), torch.ones_like(words), torch.ones_like(sep)], dim=1)
        # Positions skip padding so a sample's encoding does not depend on the batch's padding.
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        return ids, mask, types, positions

    def _mask_for_mlm(self, input_ids, labels, words, frame_mask, aligned):
        """BERT masking (80% [MASK], 10% random, 10% kept) of text pieces with labels and of
        visual words (only in rows that have random-mask text, i.e. not template rows).

        Every row is corrupted alike, but only rows whose video belongs to their text
        (``aligned``, (B,) bool) get MLM targets: a caption word predicted next to another
        video's words teaches the model that the video is no evidence for the text, the opposite
        of what template filling needs (UNITER and LXMERT likewise keep masked modelling to
        matched pairs). Masking only aligned rows would hand the alignment head a shortcut
        ([MASK] present = aligned) that is gone at evaluation, when nothing is masked."""
        generator = None
        device = input_ids.device
        if not self.training:
            generator = torch.Generator(device=device).manual_seed(self.EVAL_MASK_SEED)
        p = self.config.mlm_probability
        mask_id = self.tokenizer.mask_token_id
        given = (input_ids == mask_id) & (labels != IGNORE_INDEX)  # template rows: always predicted
        candidates = (labels != IGNORE_INDEX) & ~given
        pretrain_rows = candidates.any(1, keepdim=True)  # (B, 1)
        chosen_text = candidates & (torch.rand(input_ids.shape, generator=generator, device=device) < p)
        chosen_words = pretrain_rows & frame_mask & (torch.rand(words.shape, generator=generator, device=device) < p)

        def corrupt(ids, chosen, low, high):
            roll = torch.rand(ids.shape, generator=generator, device=device)
            random_ids = torch.randint(low, high, ids.shape, generator=generator, device=device)
            ids = torch.where(chosen & (roll < 0.8), torch.full_like(ids, mask_id), ids)
            return torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_ids, ids)

        offset, k = self.visual_word_offset, self.config.num_visual_words
        scored = aligned[:, None]  # (B, 1)
        text_labels = torch.where((chosen_text | given) & scored, labels, torch.full_like(labels, IGNORE_INDEX))
        word_labels = torch.where(chosen_words & scored, words, torch.full_like(words, IGNORE_INDEX))
        return corrupt(input_ids, chosen_text, 0, offset), corrupt(words, chosen_words, offset, offset + k), text_labels, word_labels

    def forward(self, *, input_ids, pixel_values=None, frame_features=None, attention_mask=None, labels=None, frame_mask=None, alignment_labels=None):
        """The video comes as exactly one of ``pixel_values`` and ``frame_features`` (see ``frame_vectors``)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        vectors, frame_mask = self.frame_vectors(pixel_values, frame_mask, frame_features=frame_features)  # (B, T, D), (B, T)
        words = self.visual_word_ids(vectors)  # (B, T)
        batch = input_ids.shape[0]
        if alignment_labels is None and labels is not None and batch > 1:
            # Negatives: a random half of the rows see the next row's video (VideoBERT's alignment task).
            generator = None if self.training else torch.Generator(device=words.device).manual_seed(self.EVAL_MASK_SEED)
            swap = torch.rand(batch, generator=generator, device=words.device) < 0.5
            words = torch.where(swap[:, None], words.roll(1, 0), words)
            frame_mask = torch.where(swap[:, None], frame_mask.roll(1, 0), frame_mask)
            alignment_labels = (~swap).float()
        text_labels = word_labels = None
        if labels is not None:
            aligned = torch.ones(batch, dtype=torch.bool, device=words.device) if alignment_labels is None else alignment_labels.bool()
            input_ids, words, text_labels, word_labels = self._mask_for_mlm(input_ids, labels, words, frame_mask, aligned)
        ids, mask, types, positions = self._sequence(input_ids, attention_mask, words, frame_mask)
        out = self.bert(input_ids=ids, attention_mask=mask, token_type_ids=types, position_ids=positions, output_hidden_states=True)
        align_logits = self.alignment_head(out.hidden_states[-1][:, 0]).squeeze(-1)  # (B,)
        result = VideoBertOutput(logits=out.logits, alignment_logits=align_logits)
        losses = []
        if labels is not None:
            end = torch.full((batch, 1), IGNORE_INDEX, dtype=labels.dtype, device=labels.device)
            mlm_labels = torch.cat([text_labels, word_labels, end], dim=1)
            if (mlm_labels != IGNORE_INDEX).any():
                result.mlm_loss = F.cross_entropy(out.logits.flatten(0, 1).float(), mlm_labels.flatten(), ignore_index=IGNORE_INDEX)
                losses.append(result.mlm_loss)
        if alignment_labels is not None:
            result.alignment_loss = F.binary_cross_entropy_with_logits(align_logits.float(), alignment_labels.float())
            losses.append(self.config.alignment_weight * result.alignment_loss)
        if losses:
            result.loss = torch.stack(losses).sum()
        return result

    # -- inference helpers --------------------------------------------------------------
    @torch.no_grad()
    def alignment_score(self, *, input_ids, pixel_values=None, frame_features=None, attention_mask=None, frame_mask=None) -> torch.Tensor:
        """Probability (B,) that each text describes its video."""
        out = self(pixel_values=pixel_values, frame_features=frame_features, input_ids=input_ids, attention_mask=attention_mask, frame_mask=frame_mask)
        return torch.sigmoid(out.alignment_logits)

    @torch.no_grad()
    def score_candidates(
        self, *, templates: Sequence[str], candidates: Sequence[str], pixel_values=None, frame_features=None, frame_mask=None
    ) -> torch.Tensor:
        """Scores (B, C): mean log-probability of each candidate's word pieces filling the
        ``[MASK]`` of ``templates[b]`` next to video b (``pixel_values`` or ``frame_features``).
        Argmax over C answers the question."""
        if not candidates:
            raise ValueError("candidates: empty list")
        vectors, frame_mask = self.frame_vectors(pixel_values, frame_mask, frame_features=frame_features)  # (B, T, D), (B, T)
        if len(templates) != vectors.shape[0]:
            raise ValueError(f"templates: {len(templates)} templates for {vectors.shape[0]} videos")
        words = self.visual_word_ids(vectors)  # (B, T)
        items = [self.processor.fill(t, c, where=f"templates[{b}]") for b, t in enumerate(templates) for c in candidates]
        batch = {k: v.to(words.device) for k, v in self.processor.collate(items).items()}
        c = len(candidates)
        rows_words = words.repeat_interleave(c, 0)
        rows_mask = frame_mask.repeat_interleave(c, 0)
        ids, mask, types, positions = self._sequence(batch["input_ids"], batch["attention_mask"], rows_words, rows_mask)
        logits = self.bert(input_ids=ids, attention_mask=mask, token_type_ids=types, position_ids=positions).logits
        text_logits = logits[:, : batch["input_ids"].shape[1]].float().log_softmax(-1)  # (B*C, L, V)
        targets = batch["labels"]
        picked = text_logits.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B*C, L)
        valid = targets != IGNORE_INDEX
        scores = (picked * valid).sum(1) / valid.sum(1)
        return scores.view(len(templates), c)

    @torch.no_grad()
    def next_word_logits(self, *, context: int, pixel_values=None, frame_features=None, frame_mask=None) -> tuple[torch.Tensor, torch.Tensor]:
        """VideoBERT's forecasting: logits (B, K) over the K visual words for clip ``context``
        (0-based) given only the words of clips ``[0, context)`` and no text
        (``[CLS] [SEP] w_0 .. w_{context-1} [MASK] [SEP]``), and the true words (B,) of that clip
        (-1 where the clip is padding). The video: ``pixel_values`` or ``frame_features``."""
        vectors, frame_mask = self.frame_vectors(pixel_values, frame_mask, frame_features=frame_features)  # (B, T, D), (B, T)
        if not 1 <= context < vectors.shape[1]:
            raise ValueError(f"context: must be in [1, {vectors.shape[1] - 1}] for {vectors.shape[1]} clips, got {context}")
        words = self.visual_word_ids(vectors)  # (B, T)
        batch = words.shape[0]
        query = torch.full((batch, 1), self.tokenizer.mask_token_id, dtype=words.dtype, device=words.device)
        given = torch.cat([words[:, :context], query], dim=1)  # (B, context + 1)
        given_mask = torch.cat([frame_mask[:, :context], torch.ones_like(query, dtype=torch.bool)], dim=1)
        text = torch.tensor([[self.tokenizer.cls_token_id, self.tokenizer.sep_token_id]], device=words.device).expand(batch, -1)
        ids, mask, types, positions = self._sequence(text, torch.ones_like(text), given, given_mask)
        logits = self.bert(input_ids=ids, attention_mask=mask, token_type_ids=types, position_ids=positions).logits
        at_query = logits[:, text.shape[1] + context].float()  # (B, V)
        offset = self.visual_word_offset
        truth = torch.where(frame_mask[:, context], words[:, context] - offset, torch.full_like(words[:, context], -1))
        return at_query[:, offset : offset + self.config.num_visual_words], truth

    def language_model(self) -> nn.Module:
        """BERT with its MLM head; its vocabulary includes the visual words."""
        return self.bert
