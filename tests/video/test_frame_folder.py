"""A folder written by ``videovlm extract`` is read like the video it came from."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch


@pytest.fixture()
def extracted(tmp_path):
    from videovlm.cli import main
    from videovlm.video.writer import write_video

    frames = np.zeros((12, 32, 48, 3), dtype=np.uint8)
    for i in range(12):
        frames[i, :, :, 0] = 20 * i  # each frame its own red level
    video = write_video(tmp_path / "clip.mp4", list(frames), fps=6)
    out = tmp_path / "frames"
    assert main(["extract", str(video), str(out), "--sampler", "uniform:6", "--format", "png", "--no-progress"]) == 0
    (folder,) = [p.parent for p in out.rglob("frames.json")]
    return video, folder


def test_open_video_reads_a_frame_folder_with_the_source_times(extracted):
    from PIL import Image

    from videovlm.video import open_video

    video, folder = extracted
    record = json.loads((folder / "frames.json").read_text())
    with open_video(folder) as reader:
        meta = reader.metadata
        assert meta.num_frames == 6 and meta.pts == tuple(record["pts"]) and (meta.width, meta.height) == (48, 32)
        batch = reader.get_frames([0, 5, 5])
        assert batch.pts == (record["pts"][0], record["pts"][5], record["pts"][5])
        assert torch.equal(batch.frames[1], torch.from_numpy(np.array(Image.open(folder / record["files"][5]).convert("RGB"))))
        assert reader.get_frames_at([record["pts"][2] + 0.01]).indices == (2,)
    with open_video(folder, resize=(16, 24)) as reader:
        assert reader.get_frames([0]).frames.shape == (1, 16, 24, 3)
    with open_video(video) as source:  # the folder's frame 3 is the source frame the extraction sampled
        source_frame = source.get_frames([record["indices"][3]]).frames[0].int()
    with open_video(folder) as reader:
        assert (reader.get_frames([3]).frames[0].int() - source_frame).abs().float().mean() < 2


def test_qa_frames_and_data_check_accept_a_frame_folder(extracted, tmp_path):
    from videovlm.data.check import check_video
    from videovlm.qa import load_frames
    from videovlm.video.samplers import parse_sampler

    _, folder = extracted
    frames = load_frames(folder, sampler=parse_sampler("uniform:3"))
    assert frames.frames.shape[0] == 3 and frames.source == str(folder)
    assert check_video(folder) is None
    (folder / "frames.json").write_text("{}")
    assert check_video(folder).startswith("undecodable: frames.json is not a frames record")
