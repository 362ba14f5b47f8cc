"""tools/tower_learnability.py: the labels are the frame's ground truth and both towers train."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

TOOL = Path(__file__).resolve().parents[2] / "tools" / "tower_learnability.py"


def _tool():
    spec = importlib.util.spec_from_file_location("tower_learnability", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rendered_frames_carry_the_sets_on_screen():
    tool = _tool()
    from videovlm.data.synthetic.vocabulary import COLOR_NAMES, SHAPES

    pixels, labels, captions = tool.rendered_batch(np.random.default_rng(0), 8)
    assert pixels.shape == (8, 3, 112, 112) and labels.shape == (8, len(COLOR_NAMES) + len(SHAPES))
    colours, shapes = labels[:, : len(COLOR_NAMES)].sum(1), labels[:, len(COLOR_NAMES) :].sum(1)
    # 1-3 objects with distinct colours and distinct shapes: as many colours as shapes on screen.
    assert torch.equal(colours, shapes) and bool(((shapes >= 1) & (shapes <= 3)).all())
    for row, caption in zip(labels, captions):  # the caption names exactly the shapes on screen
        named = {shape for shape in SHAPES if shape in caption}
        assert named == {shape for i, shape in enumerate(SHAPES) if row[len(COLOR_NAMES) + i]}
    again, _, _ = tool.rendered_batch(np.random.default_rng(0), 8)
    assert torch.equal(pixels, again)  # seeded


def test_both_towers_train_and_report(capsys):
    tool = _tool()
    tool.VAL_FRAMES, tool.PROBE_TRAIN_FRAMES, tool.BATCH = 16, 16, 4
    for arch, objective in (("cnn", "labels"), ("clip", "labels"), ("cnn", "contrastive")):
        tool.main(["--arch", arch, "--objective", objective, "--steps", "2"])
        rows = capsys.readouterr().out.strip().splitlines()
        assert objective in rows[0] and rows[-1].split()[0] == "2" and rows[-1].count("%") == 2, rows
