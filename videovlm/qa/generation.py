"""Decoding settings (greedy, beam search, seeded sampling) and token streaming.

The families' ``generate`` wraps Hugging Face ``generate`` on the language side with the KV
cache on; these settings become its keyword arguments. Sampling is made reproducible by
seeding a forked torch RNG around the call, so a seeded answer does not depend on (or
disturb) the caller's global random state.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from typing import Any, TextIO

import torch


class GenerationSettingsError(ValueError):
    """A decoding option is out of range or the options contradict each other."""


@dataclass(frozen=True)
class GenerationSettings:
    """How answers are decoded.

    Fields:
        max_new_tokens: most tokens generated per answer.
        num_beams: beam width; 1 = greedy (or sampling when ``do_sample``).
        do_sample: sample from the distribution instead of taking the argmax.
        temperature, top_p, top_k: sampling shape (used only with ``do_sample``).
        seed: seeds the sampling RNG for a reproducible answer (None = the global RNG).
        repetition_penalty: >1 discourages repeating tokens (1 = off).
    """

    max_new_tokens: int = 32
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 50
    seed: int | None = None
    repetition_penalty: float = 1.0

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise GenerationSettingsError(f"max_new_tokens: must be >= 1, got {self.max_new_tokens}")
        if self.num_beams < 1:
            raise GenerationSettingsError(f"num_beams: must be >= 1, got {self.num_beams}")
        if self.temperature <= 0:
            raise GenerationSettingsError(f"temperature: must be > 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise GenerationSettingsError(f"top_p: must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise GenerationSettingsError(f"top_k: must be >= 0, got {self.top_k}")
        if self.repetition_penalty <= 0:
            raise GenerationSettingsError(f"repetition_penalty: must be > 0, got {self.repetition_penalty}")

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for Hugging Face ``generate``."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "num_beams": self.num_beams,
            "do_sample": self.do_sample,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        return kwargs

    def rng(self) -> contextlib.AbstractContextManager:
        """Context in which ``generate`` draws its samples: a forked RNG seeded with ``seed``."""
        if self.seed is None or not self.do_sample:
            return contextlib.nullcontext()
        return _seeded(self.seed)


@contextlib.contextmanager
def _seeded(seed: int):
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def terminal_streamer(tokenizer, *, stream: TextIO | None = None):
    """A ``transformers.TextStreamer`` printing new tokens as they come (prompt skipped)."""
    from transformers import TextStreamer

    target = stream or sys.stdout

    class _Streamer(TextStreamer):
        # TextStreamer prints to stdout; this one writes to ``target`` (a test buffer, stderr...).
        def on_finalized_text(self, text: str, stream_end: bool = False):
            target.write(text + ("\n" if stream_end else ""))
            target.flush()

    return _Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
