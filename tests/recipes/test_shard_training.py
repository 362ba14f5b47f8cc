"""Training from the webdataset shards `videovlm extract --format wds` writes: the manifest's
rows travel in the shards, a shard item equals the video item, webdataset splits the shards by
rank and worker, a SIGKILLed run resumes with the same batches, and recipes/videollama/
tiny_shards.yaml gets tiny.yaml's losses when both see the same items."""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

from tests.recipes.conftest import RECIPES, recipe_data, stage_overrides
from tests.recipes.test_recipes_run import losses
from tests.train.conftest import killing_launcher, run_train, train_env
from tests.train.test_engine import check_ok
from videovlm.train.config import validate
from videovlm.train.data import DataError
from videovlm.train.engine import Trainer
from videovlm.train.datasets.shards import ShardBatches, ShardQADataset, is_shard_stage
from videovlm.video.extract import extract_videos

SHARDS_RECIPE = RECIPES / "videollama" / "tiny_shards.yaml"


@pytest.fixture(scope="module")
def shards(tmp_path_factory, mini_data) -> dict[str, Path]:
    """The train QA and instructions of the mini data set, one video per shard, png frames."""
    root = tmp_path_factory.mktemp("shards")
    for name, manifest in (("qa", "qa.json"), ("instructions", "instructions.json")):
        summary = extract_videos(
            input_spec=str(mini_data / "train" / manifest), output=root / name, image_format="wds", wds_frames="png", tar_size=1, workers=1, progress=False
        )
        assert summary.done == 6 and summary.failed == 0
    return {"qa": root / "qa", "instructions": root / "instructions"}


def shard_rows(path: Path) -> list[tuple[str, str]]:
    """(sample key, question) of every row carried in one shard file."""
    rows = []
    with tarfile.open(path) as tar:
        for member in tar:
            if member.name.endswith(".json"):
                record = json.loads(tar.extractfile(member).read())
                rows += [(record["key"], row["question"]) for row in record["rows"]]
    return rows


@pytest.fixture(scope="module")
def processor(mini_data, runs_dir):
    from videovlm.train.instantiate import instantiate

    data = recipe_data(RECIPES / "videollama" / "tiny.yaml", mini_data=mini_data, runs_dir=runs_dir)
    return instantiate(data["model"]).processor


def test_extract_carries_the_manifest_rows(shards, mini_data):
    questions = json.loads((mini_data / "train" / "qa.json").read_text())
    carried = [row for path in sorted(shards["qa"].glob("videos-*.tar")) for row in shard_rows(path)]
    assert Counter(q for _, q in carried) == Counter(item["question"] for item in questions)
    with tarfile.open(sorted(shards["qa"].glob("videos-*.tar"))[0]) as tar:
        names = tar.getnames()
        record = json.loads(tar.extractfile(next(n for n in names if n.endswith(".json"))).read())
    assert sum(n.endswith(".png") for n in names) == len(record["files"]) == 8
    assert "video" not in record["rows"][0] and {"question", "answer", "type"} <= set(record["rows"][0])


def test_a_shard_item_equals_the_video_item(shards, mini_data, processor):
    from videovlm.train.datasets import VideoQADataset

    stream = ShardQADataset(shards=str(shards["qa"] / "videos-*.tar"), processor=processor)
    assert stream.sampler_spec == "uniform:8"
    videos = VideoQADataset(path=mini_data / "train" / "qa.json", processor=processor, sampler="uniform:8", train=False)
    where = {(r.video.stem, r.question): i for i, r in enumerate(videos.records)}
    raw = stream.raw_items(seed=0)
    for position in range(12):
        item = next(raw)
        got = stream.encode(item, position)
        expected = videos[where[(Path(item.key).name, item.row["question"])]]
        assert set(got) == set(expected)
        for key in expected:  # png frames: the decoded frames, bit for bit
            assert torch.equal(got[key], expected[key]), key


def test_webdataset_splits_the_shards_by_rank_and_worker(shards, processor, monkeypatch):
    stream = ShardQADataset(shards=str(shards["qa"] / "videos-*.tar"), processor=processor, shuffle_buffer=4)
    order = stream.epoch_urls(seed=3, epoch=0)
    seen: list[tuple[str, str]] = []
    for rank in range(2):
        for worker in range(2):
            for name, value in (("RANK", rank), ("WORLD_SIZE", 2), ("WORKER", worker), ("NUM_WORKERS", 2)):
                monkeypatch.setenv(name, str(value))  # what webdataset's pytorch_worker_info reads
            mine = order[rank::2][worker::2]  # split_by_node, then split_by_worker
            expected = [row for path in mine for row in shard_rows(Path(path))]
            raw = stream.raw_items(seed=3)
            got = [(next(raw)) for _ in expected]
            assert Counter((i.record["key"], i.row["question"]) for i in got) == Counter(expected)
            seen += expected
    everything = [row for path in stream.urls for row in shard_rows(Path(path))]
    assert Counter(seen) == Counter(everything)  # every row once per epoch, over the 4 streams


def test_bad_shard_setups_are_clear_errors(shards, mini_data, processor, tmp_path):
    stream = ShardQADataset(shards=str(shards["qa"] / "videos-*.tar"), processor=processor)
    with pytest.raises(DataError, match="6 shard file.*8 streams"):
        ShardBatches([stream], None, seed=0, micro_batch_size=2, gradient_accumulation_steps=1, rank=0, world_size=4, num_workers=2, start_step=0)
    with pytest.raises(DataError, match="matches no file"):
        ShardQADataset(shards=str(tmp_path / "none-*.tar"), processor=processor)
    (tmp_path / "junk.tar").write_bytes(b"not a tar")
    with pytest.raises(DataError, match="not a readable shard"):
        ShardQADataset(shards=str(tmp_path / "junk.tar"), processor=processor)
    with pytest.raises(DataError, match="evaluate on the files"):
        ShardQADataset(shards=str(shards["qa"] / "videos-*.tar"), processor=processor, train=False)
    from videovlm.train.datasets import VideoQADataset

    files = VideoQADataset(path=mini_data / "train" / "qa.json", processor=processor)
    with pytest.raises(DataError, match="mixes shard datasets and file datasets"):
        is_shard_stage([stream, files], stage="readout")


def shard_recipe(mini_data, runs_dir, shards, out: Path, overrides: list[str]) -> dict:
    data = recipe_data(SHARDS_RECIPE, mini_data=mini_data, runs_dir=runs_dir, overrides=[*stage_overrides(SHARDS_RECIPE), f"output_dir={out}", *overrides])
    for stage in data["stages"]:
        for component in stage["data"]["train"]:
            kind = "instructions" if component["_component_"].endswith("ShardInstructionDataset") else "qa"
            component["shards"] = str(shards[kind] / "videos-*.tar")
    return data


def test_sigkill_then_resume_streams_the_same_batches(shards, mini_data, runs_dir, tmp_path):
    """Two DataLoader workers, each with its own shards; killed after step 2, resumed: the
    losses of every step equal the uninterrupted run's (the skip lands on the same items)."""
    extra = ["checkpoint_every=2", "num_workers=2", "stages.0.steps=4", "stages.0.micro_batch_size=3"]
    data = shard_recipe(mini_data, runs_dir, shards, tmp_path / "unused", extra)
    data["stages"] = data["stages"][:1]
    env = train_env(tmp_path)
    runs = {}
    for name in ("reference", "killed"):
        out = tmp_path / name
        recipe = tmp_path / f"{name}.yaml"
        recipe.write_text(yaml.safe_dump({**data, "output_dir": str(out)}))
        runs[name] = (recipe, out)
    check_ok(run_train(runs["reference"][0], env=env, timeout=300))
    killed = run_train(runs["killed"][0], env=env, launcher=killing_launcher(2), timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    check_ok(run_train(runs["killed"][0], "resume=true", env=env, timeout=300))
    expected = losses(runs["reference"][1] / "readout")
    assert len(expected) == 4 and losses(runs["killed"][1] / "readout") == expected


def test_shard_recipe_gets_the_video_recipe_losses(shards, mini_data, runs_dir, tmp_path):
    """Every QA row of the mini set in one micro-batch, so both recipes train on the same items
    each step (the orders differ by design): the losses agree to 1e-5."""
    count = len(json.loads((mini_data / "train" / "qa.json").read_text()))
    common = ["features=online", "num_workers=0", f"stages.0.micro_batch_size={count}", "stages.0.steps=2"]
    results = {}
    for name, recipe in (("shards", SHARDS_RECIPE), ("videos", RECIPES / "videollama" / "tiny.yaml")):
        out = tmp_path / name
        if name == "shards":
            data = shard_recipe(mini_data, runs_dir, shards, out, common)
        else:
            data = recipe_data(recipe, mini_data=mini_data, runs_dir=runs_dir, overrides=[*stage_overrides(recipe), f"output_dir={out}", *common])
        data["stages"] = data["stages"][:1]
        data["stages"][0]["data"]["train"] = data["stages"][0]["data"]["train"][:1]  # all questions, once
        data["stages"][0]["data"].pop("weights", None)
        results[name] = Trainer(validate(data)).run()
        results[name] = losses(out / "readout")
    assert len(results["videos"]) == 2
    assert results["shards"] == pytest.approx(results["videos"], abs=1e-5)
