"""A small lower-case WordPiece tokenizer for the embedded default, built with ``tokenizers``.

One tokenizer serves all three families, so it carries every family's special tokens: BERT's
``[PAD] [UNK] [CLS] [SEP] [MASK]``, the seq2seq/causal ``<s> </s>``, the media placeholders
``<video> <image>`` and the chat markers of the Video-LLaMA conversation template. It is a
``PreTrainedTokenizerFast`` and round-trips through ``save_pretrained`` / ``AutoTokenizer``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

VIDEO_TOKEN = "<video>"
IMAGE_TOKEN = "<image>"
HUMAN_MARKER = "###Human:"
ASSISTANT_MARKER = "###Assistant:"

DEFAULT_SPECIAL_TOKENS: tuple[str, ...] = (
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>",
    VIDEO_TOKEN, IMAGE_TOKEN, HUMAN_MARKER, ASSISTANT_MARKER,
)  # fmt: skip


def train_tokenizer(
    texts: Iterable[str],
    *,
    vocab_size: int = 2000,
    special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
    min_frequency: int = 1,
) -> PreTrainedTokenizerFast:
    """Train a lower-case WordPiece tokenizer on ``texts``; special tokens get the first ids.

    The vocabulary is: the special tokens, every character seen (bare and as a ``##``
    continuation, so any word of the corpus alphabet can be spelled), then whole words by
    frequency (ties alphabetical) up to ``vocab_size``. This is deterministic, unlike the
    ``tokenizers`` WordPiece/BPE trainers, whose merges of equal frequency follow hash-map
    order and change from run to run (different ids, different golden values). Splitting and
    lower-casing are the ``tokenizers`` BERT normaliser and pre-tokeniser, so training and
    tokenisation see words identically.

    ``special_tokens`` must contain ``[PAD] [UNK] [CLS] [SEP] [MASK] <s> </s>`` (the roles
    every family uses); any others (placeholders, chat markers) become additional special tokens.
    """
    required = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>")
    missing = [t for t in required if t not in special_tokens]
    if missing:
        raise ValueError(f"special_tokens: missing {missing} (needed by the model families)")
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    if not counts:
        raise ValueError("texts: no words to train on")
    alphabet = sorted({ch for word in counts for ch in word})
    pieces = [*alphabet, *(f"##{ch}" for ch in alphabet)]
    words = [w for w, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_frequency and len(w) > 1]
    budget = max(0, vocab_size - len(special_tokens) - len(pieces))
    vocab = {token: i for i, token in enumerate(dict.fromkeys([*special_tokens, *pieces, *words[:budget]]))}
    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.add_special_tokens(list(special_tokens))
    extra = [t for t in special_tokens if t not in required]
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=extra,
    )


def ensure_placeholder_tokens(tokenizer, tokens: Sequence[str] = (VIDEO_TOKEN, IMAGE_TOKEN)) -> None:
    """Give a real checkpoint's tokenizer the media placeholders (and a pad token) if it lacks them."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in tokens if t not in vocab]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    if tokenizer.pad_token is None:
        # Llama tokenizers ship without a pad token; padded positions are masked anyway.
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token


def load_tokenizer(tokenizer, *, source: str | None, where: str):
    """The given tokenizer, or ``AutoTokenizer.from_pretrained(source)`` (the language
    checkpoint's own tokenizer); the media placeholders are added either way."""
    if tokenizer is None:
        if source is None:
            raise ValueError(f"{where}: no tokenizer given and no checkpoint to load one from")
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    ensure_placeholder_tokens(tokenizer)
    return tokenizer


def token_id(tokenizer, token: str, *, where: str = "tokenizer") -> int:
    """The id of a single-token string; a clear error when the tokenizer lacks it."""
    ids = tokenizer.convert_tokens_to_ids([token])
    if not ids or ids[0] is None or ids[0] == tokenizer.unk_token_id:
        raise ValueError(f"{where}: has no token {token!r}")
    return int(ids[0])
