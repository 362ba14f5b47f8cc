"""QA normalisation / accuracy, POPE, BLEU, CIDEr-D and CHAIR against hand-computed values."""

from __future__ import annotations

import math

import pytest

from videovlm.eval.caption import cider_d, corpus_bleu
from videovlm.eval.chair import chair, synthetic_ground_truth, synthetic_object_vocabulary
from videovlm.eval.normalize import caption_tokens, normalize_answer
from videovlm.eval.pope import parse_yes_no, pope_metrics
from videovlm.eval.qa import pooled_accuracy, qa_accuracy


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Red circle.", "red circle"),
        ("  an   apple!! ", "apple"),
        ("Two", "2"),
        ("2", "2"),
        ("there are THREE stars", "there are 3 stars"),
        ("twenty-one", "20 1"),  # only single number words map; documented
        ("it's left-ward", "it s left ward"),
        ("theme", "theme"),  # articles are whole words only
        ("“Yes”…", "yes"),
        ("", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_caption_tokens_keep_articles_and_number_words():
    assert caption_tokens("A red circle, then TWO stars.") == ["a", "red", "circle", "then", "two", "stars"]


def test_qa_accuracy_per_type_and_errors():
    result = qa_accuracy(
        predictions=["Red.", "two", None, "circle", "the left"],
        answers=["red", "2", "blue", "square", "left"],
        types=["color", "count", "color", "shape", "direction"],
    )
    assert (result.overall.correct, result.overall.total, result.overall.errors) == (3, 5, 1)
    assert result.overall.accuracy == pytest.approx(0.6)
    assert list(result.per_type) == ["color", "count", "direction", "shape"]
    assert result.per_type["color"].to_dict() == {"accuracy": 0.5, "correct": 1, "total": 2, "errors": 1}
    assert result.per_type["shape"].accuracy == 0.0
    assert result.per_type["direction"].accuracy == 1.0
    pooled = pooled_accuracy(result, ["color", "direction", "order"])  # "order" absent: ignored
    assert (pooled.correct, pooled.total, pooled.errors) == (2, 3, 1)
    assert pooled_accuracy(result, ["order"]) is None


def test_qa_accuracy_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 predictions but 1 answers"):
        qa_accuracy(predictions=["a", "b"], answers=["a"])
    with pytest.raises(ValueError, match="no questions"):
        qa_accuracy(predictions=[], answers=[])


def test_pope_fixed_confusion_matrix():
    # yes-probes: yes yes yes no -> TP 3, FN 1; no-probes: yes no no "maybe" -> FP 1 + unparsed 1, TN 2
    score = pope_metrics(
        predictions=["Yes.", "yes, there is", "YES", "no", "yes", "No.", "no", "maybe"],
        answers=["yes"] * 4 + ["no"] * 4,
    )
    assert (score.true_positive, score.false_negative, score.false_positive, score.true_negative) == (3, 1, 2, 2)
    assert score.unparsed == 1
    assert score.accuracy == pytest.approx(5 / 8)
    assert score.precision == pytest.approx(3 / 5)
    assert score.recall == pytest.approx(3 / 4)
    assert score.f1 == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert score.yes_ratio == pytest.approx(4 / 8)  # the unparsed answer is not a "yes"


def test_pope_errors_and_bad_labels():
    score = pope_metrics(predictions=[None, None], answers=["yes", "no"])
    assert score.accuracy == 0.0 and score.unparsed == 2 and score.yes_ratio == 0.0
    assert parse_yes_no("Nope") is None and parse_yes_no("no, it is not") is False
    with pytest.raises(ValueError, match="probe 1: answer must be 'yes' or 'no'"):
        pope_metrics(predictions=["yes", "yes"], answers=["yes", "circle"])


def test_bleu_hand_computed():
    # candidate 5 tokens, closest reference 5 tokens (no brevity penalty).
    # matches: 1-grams 5/5, 2-grams 3/4, 3-grams 2/3, 4-grams 1/2
    score = corpus_bleu(
        {"v": "A red circle moves left."},
        {"v": ["a red circle moves to the left", "a red circle goes left"]},
    )
    assert score.candidate_length == 5 and score.reference_length == 5
    assert score.bleu[0] == pytest.approx(1.0)
    assert score.bleu[1] == pytest.approx(math.sqrt(0.75))
    assert score.bleu[2] == pytest.approx((0.75 * 2 / 3) ** (1 / 3))
    assert score.bleu4 == pytest.approx(0.25**0.25)


def test_bleu_brevity_penalty_and_clipping():
    short = corpus_bleu({"v": "red circle"}, {"v": ["a red circle moves left"]})
    assert short.bleu[1] == pytest.approx(math.exp(1 - 5 / 2))  # precisions 1, BP exp(1 - r/c)
    # "the the the" against "the cat": clipped unigram matches 1 of 3
    clipped = corpus_bleu({"v": "the the the"}, {"v": ["the cat sat"]})
    assert clipped.bleu[0] == pytest.approx(1 / 3)


def test_cider_d_hand_computed():
    # two documents; idf = log(2) - log(df). v1: unigram cosine 1/sqrt(2) ("square" has df 2 ->
    # weight 0; "circle" unseen -> df clamped to 1), bigram 0 -> 10 * (1/sqrt2) / 4.
    # v2: identical to its reference -> cosine 1 for 1- and 2-grams, 3/4-grams empty -> 10 * 2 / 4.
    score = cider_d(
        {"v1": "red circle", "v2": "blue square"},
        {"v1": ["red square"], "v2": ["blue square"]},
    )
    assert score.per_item["v1"] == pytest.approx(10 / math.sqrt(2) / 4)
    assert score.per_item["v2"] == pytest.approx(5.0)
    assert score.cider_d == pytest.approx((10 / math.sqrt(2) / 4 + 5.0) / 2)


def test_cider_d_clipping_and_length_penalty():
    # "red red": tf-idf 2*log2 on "red", clipped to the reference's log2 -> cosine 1/2
    clipped = cider_d({"v1": "red red", "v2": "blue square"}, {"v1": ["red square"], "v2": ["blue square"]})
    assert clipped.per_item["v1"] == pytest.approx(10 * 0.5 / 4)
    # one extra unseen word: the unigram cosine is 1/sqrt(2) and the Gaussian penalty exp(-1/72)
    longer = cider_d({"v1": "red square", "v2": "blue square xx"}, {"v1": ["red square"], "v2": ["blue square"]})
    unigram = 1 / math.sqrt(2)  # candidate {blue: log2, square: 0, xx: log2}, reference {blue: log2}
    bigram = 1 / math.sqrt(2)  # {blue square: log2, square xx: log2} vs {blue square: log2}
    assert longer.per_item["v2"] == pytest.approx(10 * (unigram + bigram) / 4 * math.exp(-1 / 72))


def test_caption_metrics_match_coco_caption_reference_values():
    # Values printed by pycocoevalcap 1.2 (Bleu(4), Cider()) on the same tokenised captions.
    candidates = {
        "v1": "a red circle moves to the left",
        "v2": "a blue square appears then a star moves up",
        "v3": "the green triangle stays still",
        "v4": "a circle a circle a circle",
    }
    references = {
        "v1": ["a red circle moves left", "the red circle moves to the left"],
        "v2": ["a blue square appears, then a yellow star moves up", "a star moves up after a blue square appears", "blue square appears"],
        "v3": ["a green triangle does not move"],
        "v4": ["a red circle moves to the right", "a circle moves right"],
    }
    bleu = corpus_bleu(candidates, references)
    assert bleu.bleu == pytest.approx((0.6878540043143665, 0.6665906649238228, 0.6204820074234307, 0.5864811875781629), rel=1e-12)
    cider = cider_d(candidates, references)
    assert cider.cider_d == pytest.approx(3.3517140211264738, rel=1e-12)
    assert [cider.per_item[k] for k in sorted(cider.per_item)] == pytest.approx(
        [6.007084524196409, 5.243086456566718, 1.6209983449297403, 0.5356867588130289], rel=1e-12
    )


def test_caption_metrics_reject_mismatched_ids():
    with pytest.raises(ValueError, match="differing ids"):
        cider_d({"a": "x"}, {"b": ["x"]})
    with pytest.raises(ValueError, match="id 'a'"):
        corpus_bleu({"a": "x"}, {"a": []})


ANNOTATIONS = [
    {"video_id": "v1", "objects": [{"shape": "circle", "color": "red", "color_after": None}, {"shape": "square", "color": "blue", "color_after": None}]},
    {"video_id": "v2", "objects": [{"shape": "star", "color": "red", "color_after": "purple"}]},
    {"video_id": "v3", "objects": [{"shape": "triangle", "color": "yellow", "color_after": None}]},
]
CAPTIONS = [
    "A red circle moves left and a blue square appears.",
    "a green star moves up",  # wrong colour on a real shape
    "two triangles and a circle",  # no circle in v3
]


def test_chair_colour_shape_level():
    score = chair(
        captions=CAPTIONS,
        ground_truth=[synthetic_ground_truth(a, with_colors=True) for a in ANNOTATIONS],
        vocabulary=synthetic_object_vocabulary(with_colors=True),
    )
    # mentions: {red circle, blue square}, {green star}*, {triangle, circle*}
    assert (score.mentioned, score.hallucinated, score.captions_hallucinating) == (5, 2, 2)
    assert score.chair_i == pytest.approx(2 / 5) and score.chair_s == pytest.approx(2 / 3)


def test_chair_shape_level_and_colour_change():
    score = chair(
        captions=CAPTIONS,
        ground_truth=[synthetic_ground_truth(a, with_colors=False) for a in ANNOTATIONS],
        vocabulary=synthetic_object_vocabulary(with_colors=False),
    )
    assert (score.mentioned, score.hallucinated) == (5, 1)
    assert score.chair_i == pytest.approx(1 / 5) and score.chair_s == pytest.approx(1 / 3)
    # both colours of an object that changes colour are real
    assert synthetic_ground_truth(ANNOTATIONS[1], with_colors=True) == {"star", "red star", "purple star"}
    with pytest.raises(ValueError, match=r"objects\[0\] has no field 'shape'"):
        synthetic_ground_truth({"video_id": "x", "objects": [{"color": "red"}]}, with_colors=True)
