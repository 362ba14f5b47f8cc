"""POPE-style yes/no object-existence probes: accuracy, precision, recall, F1, yes-ratio.

"yes" is the positive class. A prediction is read as yes / no from the first word of its
normalised form ("Yes, there is." -> yes). A prediction that is neither (or an error, passed as
``None``) is *unparsed*: it counts as wrong, i.e. as the opposite of the label (a false negative
on a "yes" probe, a false positive on a "no" probe), and never as a "yes" in the yes-ratio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from videovlm.eval.normalize import normalize_answer


def parse_yes_no(text: str | None) -> bool | None:
    """True for yes, False for no, None when the text starts with neither."""
    if text is None:
        return None
    words = normalize_answer(text).split()
    if not words or words[0] not in ("yes", "no"):
        return None
    return words[0] == "yes"


@dataclass(frozen=True)
class PopeScore:
    """Confusion counts (yes = positive) and the rates from them; yes_ratio = parsed yes / probes."""

    true_positive: int
    false_positive: int
    true_negative: int
    false_negative: int
    unparsed: int
    answered_yes: int

    @property
    def total(self) -> int:
        return self.true_positive + self.false_positive + self.true_negative + self.false_negative

    @property
    def accuracy(self) -> float:
        return (self.true_positive + self.true_negative) / self.total

    @property
    def precision(self) -> float:
        predicted_yes = self.true_positive + self.false_positive
        return self.true_positive / predicted_yes if predicted_yes else 0.0

    @property
    def recall(self) -> float:
        actual_yes = self.true_positive + self.false_negative
        return self.true_positive / actual_yes if actual_yes else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def yes_ratio(self) -> float:
        return self.answered_yes / self.total

    def to_dict(self) -> dict:
        rates = {k: getattr(self, k) for k in ("accuracy", "precision", "recall", "f1", "yes_ratio", "total")}
        return {**rates, **self.__dict__}


def pope_metrics(*, predictions: Sequence[str | None], answers: Sequence[str]) -> PopeScore:
    """Score yes/no predictions against "yes"/"no" answers (see the module doc for unparsed ones)."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions but {len(answers)} answers")
    if not answers:
        raise ValueError("no probes to score")
    tp = fp = tn = fn = unparsed = answered_yes = 0
    for index, (prediction, answer) in enumerate(zip(predictions, answers)):
        label = parse_yes_no(answer)
        if label is None:
            raise ValueError(f"probe {index}: answer must be 'yes' or 'no', got {answer!r}")
        said_yes = parse_yes_no(prediction)
        if said_yes is None:
            unparsed += 1
            said_yes = not label  # wrong either way, see the module doc
        else:
            answered_yes += said_yes
        if label:
            tp += said_yes
            fn += not said_yes
        else:
            fp += said_yes
            tn += not said_yes
    return PopeScore(tp, fp, tn, fn, unparsed, answered_yes)
