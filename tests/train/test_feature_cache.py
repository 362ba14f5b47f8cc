"""Frozen-feature cache: hits, misses, staleness, and the same training losses as on the fly."""

from __future__ import annotations

import copy
import functools
import os

import numpy as np
import pytest
import torch

from tests.qa.conftest import build_micro
from videovlm.train.feature_cache import FeatureCache, FeatureCacheError, FrozenFront, model_namespace, precompute
from videovlm.train.feature_cache_data import use_cached_features

SAMPLER = "segment:3"  # jitter: a different frame per segment each epoch
PARTS = ["temporal", "projector"]  # Video-LLaMA stage 1: vision and LLM frozen


def _encode(processor, record, frames, valid):
    item = processor(record, frames=frames)
    item["frame_mask"] = valid
    return item


@pytest.fixture(scope="module")
def tokenizer():
    from videovlm.models import train_tokenizer

    return train_tokenizer(["what is in the video? a red blue green square moves left right"], vocab_size=80)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from videovlm.video.writer import write_video

    folder = tmp_path_factory.mktemp("cache_videos")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        frames = rng.integers(0, 255, size=(9, 40, 40, 3), dtype=np.uint8)
        paths.append(write_video(folder / f"v{i}.mp4", list(frames), fps=6))
    return paths


def _records(videos):
    from videovlm.data.formats import VideoQA

    answers = ["red square", "blue square", "green square"]
    return [VideoQA(video_id=p.stem, video=p, question="what is in the video?", answer=a, type="what") for p, a in zip(videos, answers)]


def _model(tokenizer, *, image_qformer: bool = False):
    from videovlm.models import set_trainable

    model = build_micro("videollama", tokenizer, image_qformer=image_qformer)
    set_trainable(model, PARTS)
    return model


def _base_dataset(model, videos):
    from videovlm.train.data import MediaTextDataset

    return MediaTextDataset(
        records=_records(videos),
        media_path=lambda r: (r.video, True),
        encode=functools.partial(_encode, model.processor),
        sampler=SAMPLER,
        train=True,
        seed=3,
    )


def _train(model, dataset, steps=4):
    from videovlm.train.data import PadCollator

    collate = PadCollator({"input_ids": model.tokenizer.pad_token_id})
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    losses = []
    for step in range(steps):
        batch = collate([dataset[(step, i)] for i in range(len(dataset))])  # epoch = step: new jitter each step
        loss = model(**batch.inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_cached_training_matches_on_the_fly(tokenizer, videos, tmp_path):
    online = _model(tokenizer)
    online_losses = _train(online, _base_dataset(online, videos))

    model = _model(tokenizer)
    cache = FeatureCache(tmp_path / "cache")
    namespace = model_namespace(model, ["vision"])
    from videovlm.video.samplers import parse_sampler

    report = precompute(cache=cache, namespace=namespace, front=FrozenFront(model, ["vision"]), processor=model.processor,
                        videos=videos, sampler=parse_sampler(SAMPLER), sampler_spec=SAMPLER)
    assert (report.videos, report.computed, report.reused, report.failed) == (3, 27, 0, [])  # jitter: every frame of each video
    again = precompute(cache=FeatureCache(tmp_path / "cache"), namespace=namespace, front=FrozenFront(model, ["vision"]),
                       processor=model.processor, videos=videos, sampler=parse_sampler(SAMPLER), sampler_spec=SAMPLER)
    assert (again.computed, again.reused) == (0, 27)
    assert sorted(p.name for p in (tmp_path / "cache" / namespace.key).iterdir()) == ["shard-00000.safetensors"]
    from videovlm.train.feature_cache import video_identity

    hit, _ = cache.lookup(namespace, video_identity(videos[0]), [0, 8])  # opens the shard
    # DataLoader workers get a copy of the dataset (pickled with spawn): shard handles are not copied.
    clone = copy.deepcopy(cache)
    assert clone._open == {} and torch.equal(clone.lookup(namespace, video_identity(videos[0]), [0, 8])[0], hit)

    (cached,) = use_cached_features(model=model, datasets=[_base_dataset(model, videos)], cache_dir=tmp_path / "cache",
                                    trainable=PARTS, on_miss="error")
    assert cached.input_name == "frame_features"
    item = cached[(0, 0)]
    assert "pixel_values" not in item and item["frame_features"].shape == (3, 5, 64)  # (T, N, D): CLS + 2x2 patches
    cached_losses = _train(model, cached)
    assert cached.misses == 0 and cached.hits == 13
    assert cached_losses == pytest.approx(online_losses, rel=1e-4, abs=1e-5)

    # The model is a plain Video-LLaMA throughout (the cache changes its input, not its class).
    from videovlm.models import VideoLlamaModel, load_pretrained

    assert type(model) is VideoLlamaModel and type(load_pretrained(model.save_pretrained(tmp_path / "final"))) is VideoLlamaModel


def test_cached_training_matches_on_the_fly_with_a_conv_tower(tokenizer, videos, tmp_path):
    """A frozen ConvNeXt tower (pooled vector + 4x4 feature map per frame) caches the same way:
    the cached features are the tower's own output and the training losses are identical."""
    from tests.models.conftest import conv_vision
    from tests.qa.conftest import micro_language
    from videovlm.models import VideoLlamaConfig, VideoLlamaModel, set_trainable
    from videovlm.video.samplers import parse_sampler

    def conv_model():
        torch.manual_seed(0)
        temporal = {"_component_": "videovlm.models.temporal.VideoQFormer", "num_queries": 2, "max_frames": 4, "num_layers": 1, "num_heads": 2}
        config = VideoLlamaConfig(vision=conv_vision("convnext"), llm=micro_language("causal", tokenizer), temporal=temporal, max_frames=4)
        model = VideoLlamaModel(config, tokenizer=tokenizer)
        set_trainable(model, PARTS)
        return model

    online = conv_model()
    online_losses = _train(online, _base_dataset(online, videos))
    model = conv_model()
    cache = FeatureCache(tmp_path / "cache")
    namespace = model_namespace(model, ["vision"])
    precompute(cache=cache, namespace=namespace, front=FrozenFront(model, ["vision"]), processor=model.processor,
               videos=videos, sampler=parse_sampler(SAMPLER), sampler_spec=SAMPLER)
    dataset = _base_dataset(model, videos)
    item = dataset[(0, 0)]
    (cached,) = use_cached_features(model=model, datasets=[dataset], cache_dir=tmp_path / "cache", trainable=PARTS, on_miss="error")
    features = cached[(0, 0)]["frame_features"]
    assert features.shape == (3, 1 + 4 * 4, 32)  # (T, pooled + h*w, C)
    with torch.no_grad():
        assert torch.equal(features, online.vision(item["pixel_values"][None].float())[0])
    cached_losses = _train(model, cached)
    assert cached.misses == 0 and cached_losses == online_losses


def test_videobert_trains_from_cached_tower_features(tokenizer, videos, tmp_path):
    """VideoBERT's frozen tower output is cached the same way: each frame is still quantised
    to its visual word, so the losses equal training on decoded pixels; saves as VideoBERT."""
    from videovlm.data.formats import VideoCaption
    from videovlm.models import VideoBertModel, load_pretrained, set_trainable
    from videovlm.train.data import MediaTextDataset
    from videovlm.video.samplers import parse_sampler

    records = [VideoCaption(video_id=p.stem, video=p, caption=c, duration=None) for p, c in zip(videos, ["a red square", "a blue square", "a green square moves left"])]

    def model_and_data():
        model = build_micro("videobert", tokenizer)
        set_trainable(model, ["bert", "alignment_head"])
        data = MediaTextDataset(records=records, media_path=lambda r: (r.video, True), encode=functools.partial(_encode, model.processor),
                                sampler=SAMPLER, train=True, seed=3)
        return model, data

    online, data = model_and_data()
    with torch.no_grad():  # a codebook where the random frames fall into different words
        frames = torch.stack([data[(0, i)]["pixel_values"] for i in range(len(data))])
        vectors = online.frame_vectors(frames)[0].flatten(0, 1)  # (P, D): the frames' own vectors as words
        online.visual_words.copy_(vectors[torch.arange(online.config.num_visual_words) % len(vectors)])
    torch.manual_seed(5)
    online_losses = _train(online, data)

    model, data = model_and_data()
    model.visual_words.copy_(online.visual_words)
    precompute(cache=FeatureCache(tmp_path / "cache"), namespace=model_namespace(model, ["vision"]), front=FrozenFront(model, ["vision"]),
               processor=model.processor, videos=videos, sampler=parse_sampler(SAMPLER), sampler_spec=SAMPLER)
    (cached,) = use_cached_features(model=model, datasets=[data], cache_dir=tmp_path / "cache", trainable=["bert", "alignment_head"], on_miss="error")
    assert type(model) is VideoBertModel and cached.input_name == "frame_features"
    item = cached[(0, 0)]
    assert "pixel_values" not in item and item["frame_features"].shape == (3, 1, 64)  # (T, 1, D): the pooled feature per frame
    torch.manual_seed(5)
    cached_losses = _train(model, cached)
    assert cached.misses == 0
    assert cached_losses == pytest.approx(online_losses, rel=1e-4, abs=1e-5)
    with pytest.raises(ValueError, match=r"frame_features: expected \(B, T, N, D\)"):
        model(input_ids=item["input_ids"][None], frame_features=item["frame_features"])  # no batch dimension
    assert type(load_pretrained(model.save_pretrained(tmp_path / "final"))) is VideoBertModel


def test_stale_and_missing_entries_are_never_used(tokenizer, videos, tmp_path):
    from videovlm.video.samplers import parse_sampler

    model = _model(tokenizer)
    namespace = model_namespace(model, ["vision"])
    precompute(cache=FeatureCache(tmp_path / "cache"), namespace=namespace, front=FrozenFront(model, ["vision"]),
               processor=model.processor, videos=videos[:2], sampler=parse_sampler(SAMPLER), sampler_spec=SAMPLER)

    # Video 2 was never cached: reported (error) or recomputed (compute).
    (strict,) = use_cached_features(model=model, datasets=[_base_dataset(model, videos)], cache_dir=tmp_path / "cache", trainable=PARTS, on_miss="error")
    strict[(0, 0)]
    with pytest.raises(FeatureCacheError, match=r"v2.mp4 frames .*not cached"):
        strict[(0, 2)]

    # One changed frozen weight: a new namespace, so nothing cached before is served.
    stale = _model(tokenizer)
    with torch.no_grad():
        next(stale.vision.parameters()).view(-1)[0] += 1e-3
    assert model_namespace(stale, ["vision"]).key != namespace.key
    (strict,) = use_cached_features(model=stale, datasets=[_base_dataset(stale, videos)], cache_dir=tmp_path / "cache", trainable=PARTS, on_miss="error")
    with pytest.raises(FeatureCacheError, match="stale cache"):
        strict[(0, 0)]
    (lenient,) = use_cached_features(model=stale, datasets=[_base_dataset(stale, videos)], cache_dir=tmp_path / "cache", trainable=PARTS, on_miss="compute")
    recomputed = lenient[(1, 0)]["frame_features"]
    online = _base_dataset(stale, videos)[(1, 0)]
    expected = FrozenFront(stale, ["vision"])(online["pixel_values"].unsqueeze(0))[0]
    torch.testing.assert_close(recomputed, expected, rtol=1e-4, atol=1e-5)
    assert lenient.misses == 1 and lenient.hits == 0

    # An edited video file (new size / mtime) is a different video.
    stat = videos[0].stat()
    os.utime(videos[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    (strict,) = use_cached_features(model=model, datasets=[_base_dataset(model, videos)], cache_dir=tmp_path / "cache", trainable=PARTS, on_miss="error")
    with pytest.raises(FeatureCacheError, match="file changed"):
        strict[(0, 0)]
    os.utime(videos[0], ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_frozen_image_qformer_is_cached_too(tokenizer, videos, tmp_path):
    from videovlm.train.data import PadCollator

    online = _model(tokenizer, image_qformer=True)
    model = _model(tokenizer, image_qformer=True)
    (cached,) = use_cached_features(model=model, datasets=[_base_dataset(online, videos)], cache_dir=tmp_path, trainable=PARTS, on_miss="compute")
    assert cached.namespace.parts == ("vision", "image_qformer") and cached.input_name == "query_features"
    item = cached[(0, 1)]
    assert item["query_features"].shape == (3, 2, 64)  # (T, Q, D): the image Q-Former's queries per frame
    collate = PadCollator({"input_ids": tokenizer.pad_token_id})
    with torch.no_grad():
        from_cache = model(**collate([item]).inputs).loss
        on_the_fly = online.eval()(**collate([_base_dataset(online, videos)[(0, 1)]]).inputs).loss
    torch.testing.assert_close(from_cache, on_the_fly, rtol=1e-4, atol=1e-5)
    # The image Q-Former is trained: only the vision tower's output can be cached.
    (partial,) = use_cached_features(model=_model(tokenizer, image_qformer=True), datasets=[_base_dataset(online, videos)],
                                     cache_dir=tmp_path, trainable=[*PARTS, "image_qformer"], on_miss="compute")
    assert partial[(0, 1)]["frame_features"].shape == (3, 5, 64)


def test_cache_refuses_a_trained_vision_tower(tokenizer, tmp_path):
    model = _model(tokenizer)
    with pytest.raises(FeatureCacheError, match="frozen vision tower"):
        use_cached_features(model=model, datasets=[], cache_dir=tmp_path, trainable=["vision", "projector"])
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(FeatureCacheError, match="corrupt cache index"):
        FeatureCache(tmp_path)


# -- videovlm cache-features on a recipe --------------------------------------------------
# Recipe components (allowed with --allow-package tests.train.test_feature_cache).


def test_image_records_are_computed_once_and_match_the_tower(tokenizer, tmp_path):
    """Stage 1 mixes image captions in: under features: cached an image is one frame from the
    frozen front (same numbers as the tower on its pixels), kept in memory; an unreadable image
    is skipped; on_miss='error' (no front) refuses images by name."""
    from PIL import Image

    from videovlm.data.formats import ImageCaption
    from videovlm.train.data import MediaTextDataset, SkippedItem, read_image

    image = tmp_path / "red.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, size=(40, 40, 3), dtype=np.uint8)).save(image)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    model = _model(tokenizer)
    records = [ImageCaption(id="red", image=image, caption="a red square"), ImageCaption(id="broken", image=broken, caption="a square")]

    def base():
        return MediaTextDataset(records=records, media_path=lambda r: (r.image, False), encode=functools.partial(_encode, model.processor),
                                sampler=SAMPLER, train=True, seed=0)

    (images,) = use_cached_features(model=model, datasets=[base()], cache_dir=tmp_path / "cache", trainable=PARTS, on_miss="compute")
    item = images[(0, 0)]
    expected = model.vision(model.processor.frames_to_pixel_values(read_image(image)))[0]  # (1, N, D)
    assert item["frame_features"].shape == expected.shape and item["frame_mask"].tolist() == [True]
    torch.testing.assert_close(item["frame_features"], expected)
    assert images[(1, 0)]["frame_features"] is item["frame_features"]  # computed once per run
    skipped = images[(0, 1)]
    assert isinstance(skipped, SkippedItem) and "broken.png" in skipped.path
    (strict,) = use_cached_features(model=_model(tokenizer), datasets=[base()], cache_dir=tmp_path / "cache", trainable=PARTS, on_miss="error")
    with pytest.raises(FeatureCacheError, match="red.png: an image record"):
        strict[(0, 0)]


def micro_videollama(*, tokenizer_dir: str):
    from transformers import AutoTokenizer

    return build_micro("videollama", AutoTokenizer.from_pretrained(tokenizer_dir))


def caption_videos(*, captions_csv: str, processor, train: bool = True, seed: int = 0, sampler: str = SAMPLER):
    from videovlm.data.formats import read_webvid_csv
    from videovlm.train.data import MediaTextDataset

    return MediaTextDataset(records=read_webvid_csv(captions_csv), media_path=lambda r: (r.video, True),
                            encode=functools.partial(_encode, processor), sampler=sampler, train=train, seed=seed)


def test_cache_features_then_train_from_the_cache(tokenizer, videos, tmp_path, capsys):
    """videovlm cache-features on a recipe, then videovlm train with features: cached gives the
    losses of features: online (DeepSpeed engine, same seed)."""
    import yaml

    from videovlm.cli import main
    from videovlm.train.metrics import read_metrics

    tokenizer.save_pretrained(tmp_path / "tokenizer")
    captions = tmp_path / "captions.csv"
    captions.write_text("videoid,name,video\n" + "".join(f"{p.stem},a red square moves left,{p}\n" for p in videos))
    here = "tests.train.test_feature_cache"
    losses = {}
    for features in ("online", "cached"):
        recipe = {
            "output_dir": str(tmp_path / features),
            "model": {"_component_": f"{here}.micro_videollama", "tokenizer_dir": str(tmp_path / "tokenizer")},
            "features": features,
            "feature_cache": {"on_miss": "error"},
            "tensorboard": False,
            "progress_bar": False,
            "stages": [{"name": "align", "steps": 3, "lr": 1e-3, "trainable": PARTS, "micro_batch_size": 3,
                        "data": {"train": [{"_component_": f"{here}.caption_videos", "captions_csv": str(captions)}]}}],
        }
        path = tmp_path / f"{features}.yaml"
        path.write_text(yaml.safe_dump(recipe))
        if features == "cached":
            command = ["cache-features", "--recipe", str(path), "--allow-package", here, "--no-progress"]
            assert main(command) == 0
            assert "3 videos: 27 frames computed, 0 already cached" in capsys.readouterr().out
            assert FeatureCache(tmp_path / "cached" / "feature_cache").stats() == {"namespaces": 1, "videos": 3, "frames": 27}
            assert main(command) == 0
            assert "0 frames computed, 27 already cached" in capsys.readouterr().out
            assert main([*command, "feature_cache.bogus=1"]) == 2
            assert "feature_cache.bogus: unknown key" in capsys.readouterr().err
            assert main([*command, "stages.0.trainable=[vision]"]) == 2
            assert "frozen vision tower" in capsys.readouterr().err
        assert main(["train", str(path), "--allow-package", here]) == 0
        losses[features] = [r["loss"] for r in read_metrics(tmp_path / features / "align" / "metrics.jsonl") if "loss" in r]
    assert len(losses["online"]) == 3
    assert losses["cached"] == pytest.approx(losses["online"], rel=1e-4, abs=1e-5)


def test_engine_hook_reads_the_recipe_keys(tokenizer, videos, tmp_path):
    from videovlm.train.config import ConfigError, validate
    from videovlm.train.feature_cache_data import apply_feature_cache

    here = "tests.train.test_feature_cache"
    allowed = ("videovlm.", "torch.optim.", here)
    recipe = {
        "output_dir": str(tmp_path / "run"),
        "model": {"_component_": "videovlm.models.load_pretrained", "directory": str(tmp_path)},
        "features": "cached",
        "feature_cache": {"on_miss": "error", "dir": str(tmp_path / "cache")},
        "stages": [{"name": "align", "steps": 1, "lr": 1e-3, "trainable": PARTS,
                    "data": {"train": [{"_component_": f"{here}.caption_videos", "captions_csv": str(tmp_path)}]}}],
    }
    config = validate(recipe, allowed_packages=allowed)
    model = _model(tokenizer)
    train_sets = [_base_dataset(model, videos)]
    cached, val = apply_feature_cache(config=config, stage=config.stages[0], model=model, train_sets=train_sets, val_sets=[])
    assert val == [] and cached[0].on_miss == "error" and cached[0].input_name == "frame_features"
    assert cached[0].cache.directory == tmp_path / "cache" and cached[0].sampler_spec == SAMPLER
    online = validate({**recipe, "features": "online"}, allowed_packages=allowed)
    plain = _model(tokenizer)
    assert apply_feature_cache(config=online, stage=online.stages[0], model=plain, train_sets=train_sets, val_sets=[])[0] is train_sets
    with pytest.raises(ConfigError, match="feature_cache.on_miss"):
        validate({**recipe, "feature_cache": {"on_miss": "sometimes"}}, allowed_packages=allowed)


@pytest.mark.parametrize("task, options", [("FrameOrderDataset", {}), ("VideoTextMatchingDataset", {}), ("VideoTextMatchingDataset", {"reversed_negatives": 1.0})])
def test_videoofa_stage2_tasks_train_from_cached_features(tokenizer, videos, tmp_path, task, options):
    """VideoOFA's stage-2 items come from cached frame features: frame order plays the cached
    frames reversed for its negatives, matching pairs them with another video's caption; the
    same draws as with decoded frames, so the losses are identical."""
    import csv

    from videovlm.models import VideoOFAModel, load_pretrained, set_trainable
    from videovlm.recipes import videoofa
    from videovlm.video.samplers import parse_sampler

    captions = tmp_path / "captions.csv"
    with captions.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["videoid", "name", "video"])
        for path, caption in zip(videos, ["a red square", "a blue square", "a green square moves left"]):
            writer.writerow([path.stem, caption, str(path)])

    def model_and_data():
        model = build_micro("videoofa", tokenizer)
        set_trainable(model, ["temporal", "seq2seq"])
        return model, getattr(videoofa, task)(path=captions, processor=model.processor, sampler=SAMPLER, seed=3, **options)

    online, data = model_and_data()
    draws = [data.draw(step, i) for step in range(4) for i in range(len(data))]
    assert {positive for positive, _, _ in draws} == {True, False}  # both answers occur in these steps
    online_losses = _train(online, data)

    model, data = model_and_data()
    precompute(cache=FeatureCache(tmp_path / "cache"), namespace=model_namespace(model, ["vision"]), front=FrozenFront(model, ["vision"]),
               processor=model.processor, videos=videos, sampler=parse_sampler(SAMPLER), sampler_spec=SAMPLER)
    (cached,) = use_cached_features(model=model, datasets=[data], cache_dir=tmp_path / "cache", trainable=["temporal", "seq2seq"], on_miss="error")
    for step in range(2):
        for i in range(len(data)):
            pixels, features = data[(step, i)], cached[(step, i)]
            assert "pixel_values" not in features and torch.equal(features["labels"], pixels["labels"])
            assert torch.equal(features["input_ids"], pixels["input_ids"]) and torch.equal(features["frame_mask"], pixels["frame_mask"])
            with torch.no_grad():  # the cached features are the tower's output on the (possibly reversed) frames
                assert torch.allclose(features["frame_features"], model.vision(pixels["pixel_values"][None].float())[0], atol=1e-6)
    cached_losses = _train(model, cached)
    assert cached.misses == 0
    assert cached_losses == pytest.approx(online_losses, rel=1e-4, abs=1e-5)
    assert type(load_pretrained(model.save_pretrained(tmp_path / "final"))) is VideoOFAModel


def test_videoofa_generates_from_cached_features(tokenizer, videos):
    """``frame_features`` is a VideoOFA input for forward and generate alike, with the
    errors of the other families for a wrong layout or both inputs at once."""
    model = build_micro("videoofa", tokenizer).eval()
    prompt = model.processor.prompt("what is in the video?", frames=np.zeros((3, 40, 40, 3), dtype=np.uint8))
    pixels = prompt["pixel_values"][None]
    ids = prompt["input_ids"][None]
    with torch.no_grad():
        features = model.vision(pixels)  # (1, T, N, D)
    assert torch.equal(model.generate(input_ids=ids, frame_features=features, max_new_tokens=4),
                       model.generate(input_ids=ids, pixel_values=pixels, max_new_tokens=4))
    with pytest.raises(ValueError, match="give exactly one of pixel_values"):
        model(input_ids=ids, pixel_values=pixels, frame_features=features)
    with pytest.raises(ValueError, match=r"frame_features: expected \(B, T, N, D\)"):
        model(input_ids=ids, frame_features=features[0])


def test_reversed_negatives_pair_a_video_played_backwards_with_its_own_caption(tokenizer, videos, tmp_path):
    import csv

    from videovlm.recipes import videoofa

    captions = tmp_path / "captions.csv"
    with captions.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["videoid", "name", "video"])
        writer.writerows([[p.stem, c, str(p)] for p, c in zip(videos, ["a red square", "a blue square", "a green square moves left"])])
    model = build_micro("videoofa", tokenizer)
    plain = videoofa.VideoTextMatchingDataset(path=captions, processor=model.processor, sampler=SAMPLER, seed=3)
    hard = videoofa.VideoTextMatchingDataset(path=captions, processor=model.processor, sampler=SAMPLER, seed=3, reversed_negatives=1.0)
    negatives = [(step, i) for step in range(4) for i in range(3) if not hard.draw(step, i)[0]]
    assert negatives
    for key in negatives:
        own = model.processor.matching(hard.records[key[1]].caption, matches=False)
        item, reference = hard[key], plain[key]
        assert torch.equal(item["input_ids"], own["input_ids"]) and torch.equal(item["labels"], own["labels"])  # own caption, answer no
        assert torch.equal(item["pixel_values"], reference["pixel_values"].flip(0))  # the same frames, played backwards
    with pytest.raises(ValueError, match="reversed_negatives: must be in"):
        videoofa.VideoTextMatchingDataset(path=captions, processor=model.processor, reversed_negatives=1.5)
