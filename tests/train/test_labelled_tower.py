"""The tiny convolutional tower's pretraining: labels, fresh frames, the yuv420p round trip, and
that the saved result is a plain HF checkpoint the video recipes load as a vision tower."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videovlm.data.synthetic.render import render_background, render_video
from videovlm.data.synthetic.scene import sample_scene
from videovlm.models.vision import VisionTower, VisionTowerConfig
from videovlm.train.backbones import RenderedFrameDataset, frame_labels, tiny_resnet_tower
from videovlm.train.backbones.labelled_tower import RENDER_STREAM, split_head, yuv420_roundtrip
from videovlm.train.data import PadCollator
from videovlm.video import open_video
from videovlm.video.writer import write_video


def scene(seed: int):
    rng = np.random.default_rng(seed)
    return sample_scene(rng, video_id="t", size=112, num_frames=16, fps=8.0), render_background(rng, height=112, width=112)


def test_frame_labels_follow_the_ground_truth_frame_by_frame():
    changed = next(ann for ann, _ in map(scene, range(200)) if any(o.change_frame is not None for o in ann.objects))
    obj = next(o for o in changed.objects if o.change_frame is not None)
    s = ["circle", "square", "triangle", "star"].index(obj.shape)
    before, after = frame_labels(changed, obj.change_frame - 1), frame_labels(changed, obj.change_frame)
    colours = ["red", "green", "blue", "yellow", "purple", "orange"]
    assert before.colour[s] == colours.index(obj.color) and after.colour[s] == colours.index(obj.color_after)
    assert after.colours[colours.index(obj.color_after)] == 1 and before.present[s] == 1
    x, y = obj.positions[obj.change_frame]
    assert torch.allclose(after.centre[s], torch.tensor([x / 112, y / 112]))
    for frame in range(16):
        labels = frame_labels(changed, frame)
        shown = {o.shape for o in changed.objects if o.visible(frame)}
        assert int(labels.present.sum()) == len(shown)
        assert all(labels.colour[i] == -100 for i in range(4) if labels.present[i] == 0)


def test_rendered_frames_are_fresh_per_item_and_never_the_data_sets_scenes():
    tower = tiny_resnet_tower()
    data = RenderedFrameDataset(processor=tower.processor)
    a, b, again = data[(0, 0)], data[(0, 1)], data[(0, 0)]
    assert torch.equal(a["pixel_values"], again["pixel_values"])  # an item is a pure function of its key
    assert not torch.equal(a["pixel_values"], b["pixel_values"]) and not torch.equal(a["pixel_values"], data[(1, 0)]["pixel_values"])
    # the data set seeds video i of split k with [seed, k, i]; the tower's stream is another one
    ours = sample_scene(np.random.default_rng([RENDER_STREAM, 0, 0, 3]), video_id="t", size=112, num_frames=16, fps=8.0)
    theirs = sample_scene(np.random.default_rng([0, 0, 3]), video_id="t", size=112, num_frames=16, fps=8.0)
    assert ours.objects != theirs.objects
    assert a["pixel_values"].shape == (3, 112, 112) and set(a) == {"pixel_values", "present", "colour", "centre", "colours"}


def test_yuv420_roundtrip_is_what_a_yuv420p_video_does_to_the_colours(tmp_path):
    ann, background = scene(5)
    frames = render_video(ann, background)
    write_video(tmp_path / "clip.mp4", frames, fps=8, crf=18)
    with open_video(tmp_path / "clip.mp4") as reader:
        decoded = reader.get_frames(list(range(16))).frames.numpy().astype(int)
    raw = np.abs(frames.astype(int) - decoded).mean()
    roundtrip = np.abs(np.stack([yuv420_roundtrip(f) for f in frames]).astype(int) - decoded).mean()
    assert roundtrip < 0.7 * raw  # most of what h264 at crf 18 changes is the chroma subsampling
    flat = np.full((16, 16, 3), (200, 40, 40), dtype=np.uint8)
    assert np.abs(yuv420_roundtrip(flat).astype(int) - flat).max() <= 2


def test_a_few_steps_lower_the_loss_and_the_saved_tower_loads_as_a_vision_tower(tmp_path):
    torch.manual_seed(0)
    tower = tiny_resnet_tower(embedding_size=8, hidden_sizes=(8, 16, 16))
    data = RenderedFrameDataset(processor=tower.processor, seed=3)
    batch = PadCollator()([data[(0, i)] for i in range(16)]).inputs
    opt = torch.optim.AdamW(tower.parameters(), lr=3e-3)
    first = tower(**batch).loss.item()
    for _ in range(15):
        loss = tower(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.8 * first
    tower.eval().save_pretrained(tmp_path / "tower")
    vision = VisionTower(VisionTowerConfig(pretrained=str(tmp_path / "tower"), select="all")).eval()
    assert (vision.image_size, vision.tokens_per_frame, vision.hidden_size) == (112, 1 + 7 * 7, 16)
    pixels = batch["pixel_values"][:4].unsqueeze(1)  # (B, 1, 3, S, S): one-frame videos
    with torch.no_grad():
        tokens = vision(pixels)  # (B, 1, 50, 16)
        expected = split_head(tower.head(tokens[:, 0, 0]))["present"]
        assert torch.allclose(expected, tower.predict(batch["pixel_values"][:4])["present"], atol=1e-5)
    assert vision.pixel.mean == tower.pixel.mean and vision.pixel.image_size == 112


@pytest.mark.parametrize("bad", [{"hidden_sizes": (8, 16, 16, 16), "depths": (1, 1, 1, 1)}])
def test_a_tower_whose_stride_does_not_tile_112_px_is_refused_when_loaded(tmp_path, bad):
    tiny_resnet_tower(embedding_size=8, **bad).save_pretrained(tmp_path / "tower")  # stride 32: 112 / 32 is not whole
    with pytest.raises(ValueError, match="not a multiple of"):
        VisionTower(VisionTowerConfig(pretrained=str(tmp_path / "tower")))
