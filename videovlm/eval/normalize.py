"""Text normalisation shared by the QA, POPE, caption and CHAIR metrics.

QA answers are compared after `normalize_answer`, the usual VQA / MSRVTT-QA recipe:

1. lower-case (Unicode casefold);
2. every punctuation character becomes a space ("left." -> "left", "t-shirt" -> "t shirt");
3. the articles "a", "an", "the" are dropped;
4. number words from zero to twenty become digits ("two" -> "2"), so "two" and "2" match
   whichever form the model or the data set uses; other numbers are left as written;
5. runs of whitespace collapse to one space, ends are stripped.

Captions for BLEU / CIDEr-D keep articles and number words (the n-gram metrics were published
on that text): they only go through `caption_tokens` (steps 1, 2 and 5), which is what the
coco-caption PTB tokenizer leaves of a plain English caption.
"""

from __future__ import annotations

import re
import unicodedata

ARTICLES = frozenset({"a", "an", "the"})

NUMBER_WORDS: dict[str, str] = {
    word: str(value)
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}

_WHITESPACE = re.compile(r"\s+")


def _strip_punctuation(text: str) -> str:
    # Unicode category P* covers ASCII and typographic punctuation (quotes, dashes, ellipses).
    return "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)


def caption_tokens(text: str) -> list[str]:
    """Lower-cased words of a caption with punctuation removed (the n-gram metrics' tokens)."""
    return _strip_punctuation(text.casefold()).split()


def normalize_answer(text: str) -> str:
    """The canonical form of a short answer used for exact-match accuracy (see module doc)."""
    words = [NUMBER_WORDS.get(word, word) for word in caption_tokens(text) if word not in ARTICLES]
    return _WHITESPACE.sub(" ", " ".join(words)).strip()
