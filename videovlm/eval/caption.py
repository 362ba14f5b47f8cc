"""BLEU-1..4 and CIDEr-D of generated captions, reproducing the coco-caption scorers.

No maintained Java-free package implements CIDEr-D, and coco-caption's BLEU (corpus-level,
"closest" reference length) is what video-captioning papers report, so both live here in pure
Python. They follow `pycocoevalcap` 1.2 (`bleu_scorer.py`, `cider_scorer.py`) exactly, including
its tiny smoothing constants, on the tokens of `videovlm.eval.normalize.caption_tokens`; the
tests compare them with numbers worked out by hand and with values from that package.

Inputs are mappings ``id -> candidate caption`` and ``id -> list of reference captions`` with
the same keys. Deterministic: no randomness, ids are processed in sorted order.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from videovlm.eval.normalize import caption_tokens

# coco-caption's constants: keep a zero n-gram match from making log/0 blow up.
_TINY = 1e-15
_SMALL = 1e-9


def ngram_counts(tokens: Sequence[str], max_n: int = 4) -> Counter:
    """All n-grams of 1..max_n tokens with their counts (keys are token tuples)."""
    return Counter(tuple(tokens[i : i + n]) for n in range(1, max_n + 1) for i in range(len(tokens) - n + 1))


def _checked_pairs(
    candidates: Mapping[str, str], references: Mapping[str, Sequence[str]]
) -> list[tuple[str, list[str], list[list[str]]]]:
    if set(candidates) != set(references):
        missing = sorted(set(candidates) ^ set(references))[:5]
        raise ValueError(f"candidates and references must have the same ids; differing ids: {missing}")
    if not candidates:
        raise ValueError("no captions to score")
    pairs = []
    for key in sorted(candidates):
        refs = references[key]
        if isinstance(refs, str) or not refs:
            raise ValueError(f"references for id {key!r} must be a non-empty list of captions")
        pairs.append((key, caption_tokens(candidates[key]), [caption_tokens(r) for r in refs]))
    return pairs


@dataclass(frozen=True)
class BleuScore:
    """Corpus BLEU-1..4 (`bleu[n-1]` is BLEU-n) and the lengths behind the brevity penalty."""

    bleu: tuple[float, ...]
    candidate_length: int
    reference_length: int

    @property
    def bleu4(self) -> float:
        return self.bleu[3]


def corpus_bleu(candidates: Mapping[str, str], references: Mapping[str, Sequence[str]], *, max_n: int = 4) -> BleuScore:
    """coco-caption corpus BLEU: clipped n-gram matches summed over the corpus, closest ref length."""
    matches = [0] * max_n
    guesses = [0] * max_n
    candidate_length = reference_length = 0
    for _key, candidate, refs in _checked_pairs(candidates, references):
        max_ref_counts: Counter = Counter()
        for ref in refs:
            max_ref_counts |= ngram_counts(ref, max_n)  # element-wise max = clipping limit
        for gram, count in ngram_counts(candidate, max_n).items():
            matches[len(gram) - 1] += min(count, max_ref_counts[gram])
        for n in range(1, max_n + 1):
            guesses[n - 1] += max(0, len(candidate) - n + 1)
        candidate_length += len(candidate)
        # closest reference length; on a tie the shorter one (coco-caption's min over (diff, len))
        reference_length += min((abs(len(r) - len(candidate)), len(r)) for r in refs)[1]
    scores = []
    product = 1.0
    for n in range(max_n):
        product *= (matches[n] + _TINY) / (guesses[n] + _SMALL)
        scores.append(product ** (1.0 / (n + 1)))
    ratio = (candidate_length + _TINY) / (reference_length + _SMALL)
    if ratio < 1:
        brevity = math.exp(1 - 1 / ratio)
        scores = [s * brevity for s in scores]
    return BleuScore(bleu=tuple(scores), candidate_length=candidate_length, reference_length=reference_length)


@dataclass(frozen=True)
class CiderScore:
    """Corpus CIDEr-D (mean of `per_item`) and the score of each id."""

    cider_d: float
    per_item: dict[str, float]


def _tfidf(counts: Counter, doc_freq: Counter, log_num_docs: float, max_n: int):
    vectors: list[dict[tuple[str, ...], float]] = [{} for _ in range(max_n)]
    norms = [0.0] * max_n
    for gram, tf in counts.items():
        weight = tf * (log_num_docs - math.log(max(1.0, doc_freq[gram])))
        vectors[len(gram) - 1][gram] = weight
        norms[len(gram) - 1] += weight * weight
    return vectors, [math.sqrt(v) for v in norms]


def cider_d(
    candidates: Mapping[str, str], references: Mapping[str, Sequence[str]], *, max_n: int = 4, sigma: float = 6.0
) -> CiderScore:
    """CIDEr-D: tf-idf n-gram cosine with clipping and a Gaussian length penalty, times 10.

    Document frequencies come from the references of this corpus (one document per id), as in
    coco-caption; so scores depend on the whole set being evaluated.
    """
    pairs = _checked_pairs(candidates, references)
    ref_counts = {key: [ngram_counts(r, max_n) for r in refs] for key, _c, refs in pairs}
    doc_freq: Counter = Counter()
    for counts in ref_counts.values():
        doc_freq.update(set().union(*counts))
    log_num_docs = math.log(len(pairs))
    per_item: dict[str, float] = {}
    for key, candidate, refs in pairs:
        cand_vec, cand_norm = _tfidf(ngram_counts(candidate, max_n), doc_freq, log_num_docs, max_n)
        total = [0.0] * max_n
        for ref, counts in zip(refs, ref_counts[key]):
            ref_vec, ref_norm = _tfidf(counts, doc_freq, log_num_docs, max_n)
            penalty = math.exp(-((len(candidate) - len(ref)) ** 2) / (2 * sigma**2))
            for n in range(max_n):
                # clipping ("-D"): a repeated n-gram cannot earn more than the reference holds
                dot = sum(min(w, ref_vec[n].get(g, 0.0)) * ref_vec[n].get(g, 0.0) for g, w in cand_vec[n].items())
                if cand_norm[n] and ref_norm[n]:
                    dot /= cand_norm[n] * ref_norm[n]
                total[n] += dot * penalty
        per_item[key] = 10.0 * (sum(total) / max_n) / len(refs)
    return CiderScore(cider_d=sum(per_item.values()) / len(per_item), per_item=per_item)
