"""An instruction-aware video Q-Former (InstructBLIP's Q-Former over Video-LLaMA's frame tokens):
the learned queries attend to the instruction's tokens as well as to every frame token, and the
instruction modulates the frame tokens' channels (FiLM), so the video tokens can carry what the
question asks about."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn
from transformers import InstructBlipQFormerConfig, InstructBlipQFormerModel

from videovlm.models.temporal.base import TemporalInputError, VideoTokens, all_tokens_real, check_frame_inputs
from videovlm.models.temporal.video_qformer import VideoQFormer, VideoQFormerConfig, qformer_settings


@dataclass
class InstructVideoQFormerConfig(VideoQFormerConfig):
    """Config of :class:`InstructVideoQFormer`: the fields of ``VideoQFormerConfig`` plus

    Attributes:
        vocab_size: size of the tokenizer whose ids the instruction comes in (the family's; the
            Q-Former has its own word embeddings for them, as InstructBLIP's BERT Q-Former does).
        max_instruction_tokens: longest instruction (its position embedding's size).
    """

    vocab_size: int = 32000
    max_instruction_tokens: int = 64


class InstructVideoQFormer(VideoQFormer):
    """(B, T, N, D) + instruction ids (B, L) -> (B, num_queries, D_out), with transformers'
    ``InstructBlipQFormerModel``.

    As in Video-LLaMA's video Q-Former, a learned frame position embedding is added to every
    token of a frame and all frames' tokens are the cross-attention keys. As in InstructBLIP,
    the instruction's tokens join the queries in self-attention (they do not cross-attend), so
    each query can look for what is asked: "the colour of the square" makes the queries read the
    square's cells. Only the query positions come out. Why here: a question-blind Q-Former must
    put every object's every attribute into M tokens and leave the frozen LLM to pick the named
    object's, the binding a tiny LLM is worst at (docs/results.md).

    Before the cross-attention, the instruction also scales and shifts every channel of every
    frame token (FiLM, Perez et al. 2018): ``tokens * (1 + scale) + shift``, both ``(B, D)``
    from one linear map of the mean of the instruction's word embeddings (a table of its own).
    Why: attention selects *tokens*, but a tower's features keep an object's attributes in
    *channels* (a detection-style tower's pooled vector holds each shape's colour and centre
    in its own linear subspace); picking the subspace of the named object is a product of
    question and feature that attention and a ReLU feed-forward learn slowly. Measured on the
    tiny conv tower with a linear answer head (``tools/probe_question_binding.py``, val,
    docs/results.md): without FiLM exists stays at chance (49.8% after 1000 steps); with it
    colour 100%, shape 100%, exists 97.5%, change 99.3% after 1500. The map starts at zero, so
    an untrained encoder computes what it would without FiLM.

    Takes ``instruction_ids`` / ``instruction_mask`` (B, L) as keywords; the family processor
    makes them (``VideoLlamaProcessor(instruction=True)``: the human turns, placeholder removed).
    Settings: :class:`InstructVideoQFormerConfig`.
    """

    config_class = InstructVideoQFormerConfig
    reads_instruction = True

    def __init__(self, config: InstructVideoQFormerConfig):
        super().__init__(config)
        self.vocab_size = config.vocab_size
        self.max_instruction_tokens = config.max_instruction_tokens
        # Its own word table at nn.Embedding's N(0, 1) init, not the Q-Former's BERT-init ones
        # (std 0.02): the summary is O(1) from the first step, so the FiLM learns at once
        # (measured with the probe: colour 70% vs 100% after 1000 steps, exists 51% vs 97.5%).
        self.instruction_words = nn.Embedding(config.vocab_size, int(config.hidden_size))
        # Zero init: the FiLM starts as the identity (see the class doc).
        self.instruction_film = nn.Linear(int(config.hidden_size), 2 * config.input_dim)
        nn.init.zeros_(self.instruction_film.weight)
        nn.init.zeros_(self.instruction_film.bias)

    def build_qformer(self, config: InstructVideoQFormerConfig) -> nn.Module:
        settings = qformer_settings(config)
        return InstructBlipQFormerModel(
            InstructBlipQFormerConfig(**settings, vocab_size=config.vocab_size, max_position_embeddings=config.max_instruction_tokens, pad_token_id=0)
        )

    def forward(
        self,
        frame_tokens: Tensor,
        frame_mask: Tensor | None = None,
        *,
        instruction_ids: Tensor | None = None,
        instruction_mask: Tensor | None = None,
    ) -> VideoTokens:
        """frame_tokens (B, T, N, D); frame_mask (B, T); instruction_ids / instruction_mask (B, L)."""
        frame_mask = check_frame_inputs(frame_tokens, frame_mask, input_dim=self.input_dim, owner=type(self).__name__)
        instruction_ids, instruction_mask = self.check_instruction(instruction_ids, instruction_mask, batch=frame_tokens.shape[0])
        frame_tokens = frame_tokens.masked_fill(~frame_mask[:, :, None, None], 0.0)  # (B, T, N, D)
        return self.encode_with_instruction(frame_tokens, frame_mask, instruction_ids, instruction_mask)

    def check_instruction(self, ids: Tensor | None, mask: Tensor | None, *, batch: int) -> tuple[Tensor, Tensor]:
        owner = type(self).__name__
        if ids is None:
            raise TemporalInputError(
                f"{owner}: needs instruction_ids (B, L), the question's token ids; build inputs with the "
                "family processor of a model that has this encoder (it adds them)"
            )
        if ids.dim() != 2 or ids.shape[0] != batch or ids.dtype not in (torch.int64, torch.int32):
            raise TemporalInputError(f"{owner}: instruction_ids must be integer (B={batch}, L), got {tuple(ids.shape)} {ids.dtype}")
        if ids.shape[1] > self.max_instruction_tokens:
            raise TemporalInputError(f"{owner}: instruction of {ids.shape[1]} tokens, more than max_instruction_tokens={self.max_instruction_tokens}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise TemporalInputError(f"{owner}: instruction_ids outside the vocabulary [0, {self.vocab_size})")
        if mask is None:
            mask = torch.ones_like(ids)
        if mask.shape != ids.shape:
            raise TemporalInputError(f"{owner}: instruction_mask {tuple(mask.shape)} does not match instruction_ids {tuple(ids.shape)}")
        return ids.long(), mask.long()

    def encode(self, frame_tokens: Tensor, frame_mask: Tensor) -> VideoTokens:
        raise TemporalInputError(f"{type(self).__name__}: needs instruction_ids; call it with them (forward)")

    def modulate(self, frame_tokens: Tensor, instruction_ids: Tensor, instruction_mask: Tensor) -> Tensor:
        """FiLM of the frame tokens (B, T, N, D) by the instruction (B, L): see the class doc."""
        words = self.instruction_words(instruction_ids)  # (B, L, Dq)
        weights = instruction_mask[..., None].to(words.dtype)  # (B, L, 1)
        summary = (words * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (B, Dq)
        scale, shift = self.instruction_film(summary).chunk(2, dim=-1)  # (B, D) each
        return frame_tokens * (1 + rearrange(scale, "b d -> b 1 1 d")) + rearrange(shift, "b d -> b 1 1 d")

    def encode_with_instruction(self, frame_tokens: Tensor, frame_mask: Tensor, instruction_ids: Tensor, instruction_mask: Tensor) -> VideoTokens:
        frame_tokens = self.modulate(self.input_norm(frame_tokens), instruction_ids, instruction_mask)  # (B, T, N, D)
        keys, key_mask = self.frame_keys(frame_tokens, frame_mask)  # (B, T*N, D), (B, T*N)
        queries = self.query_tokens.expand(frame_tokens.shape[0], -1, -1)  # (B, M, Dq)
        query_mask = instruction_mask.new_ones(queries.shape[:2])
        output = self.qformer(
            input_ids=instruction_ids,  # (B, L): joins the queries in self-attention
            attention_mask=torch.cat([query_mask, instruction_mask], dim=1),  # (B, M + L)
            query_embeds=queries,
            encoder_hidden_states=keys,
            encoder_attention_mask=key_mask,
        )
        video = self.projection(output.last_hidden_state[:, : self.num_queries])  # (B, M, D_out)
        return all_tokens_real(video)
