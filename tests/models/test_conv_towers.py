"""Convolutional vision towers (ConvNeXt, ConvNeXt V2, ResNet): loading by path, token layout,
select / feature_layer, pixel settings from the processor config, every temporal encoder and
every family on top, and the real ConvNeXt preset."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch
from einops import rearrange
from transformers import (
    ConvNextForImageClassification,
    ConvNextModel,
    ConvNextV2Model,
    ResNetForImageClassification,
    ResNetModel,
)

from tests.qa.conftest import micro_language
from videovlm.models import (
    ImageQFormerConfig,
    ModelConfigError,
    PixelConfig,
    VideoBertConfig,
    VideoBertModel,
    VideoLlamaConfig,
    VideoLlamaModel,
    VideoOFAConfig,
    VideoOFAModel,
    VisionTower,
    VisionTowerConfig,
    config_from_dict,
    config_to_dict,
    load_pretrained,
    set_trainable,
)
from videovlm.models import temporal as temporal_package
from videovlm.models.pixels import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    frames_to_pixel_values,
    pixel_config_from_processor_dict,
)
from videovlm.models.temporal.base import TemporalEncoder, split_patch_grid
from videovlm.models.temporal.spec import build_temporal_encoder

from .conftest import conv_vision, qa_and_caption_batch, tiny_conv_config

# kind -> (the class a hub checkpoint holds, the backbone class the tower loads from it)
CHECKPOINTS = {
    "convnext": (ConvNextForImageClassification, ConvNextModel),  # facebook/convnext-large-224
    "convnextv2": (ConvNextV2Model, ConvNextV2Model),
    "resnet": (ResNetForImageClassification, ResNetModel),  # microsoft/resnet-50
}
# What the hub's ConvNeXt / ResNet checkpoints carry (older feature-extractor format).
HUB_PROCESSOR = {
    "feature_extractor_type": "ConvNextFeatureExtractor",
    "size": 64,
    "crop_pct": 0.875,
    "do_resize": True,
    "do_normalize": True,
    "image_mean": list(IMAGENET_MEAN),
    "image_std": list(IMAGENET_STD),
    "resample": 3,
}


def _backbone(model):
    return getattr(model, "convnext", None) or getattr(model, "resnet", None) or model


@pytest.mark.parametrize("kind", sorted(CHECKPOINTS))
def test_conv_tower_loads_a_checkpoint_folder_like_a_hub_id(kind, tmp_path):
    torch.manual_seed(0)
    saved_class, backbone_class = CHECKPOINTS[kind]
    checkpoint = saved_class(tiny_conv_config(kind)).eval()
    checkpoint.save_pretrained(tmp_path / kind)
    (tmp_path / kind / "preprocessor_config.json").write_text(json.dumps(HUB_PROCESSOR))
    tower = VisionTower(VisionTowerConfig(pretrained=str(tmp_path / kind)))
    assert type(tower.model) is backbone_class
    assert tower.pixel == PixelConfig(image_size=64, resize="shortest_edge", mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=0.875)
    assert (tower.image_size, tower.hidden_size, tower.num_patches, tower.has_cls, tower.tokens_per_frame) == (64, 32, 64, True, 65)
    pixels = torch.randn(2, 3, 3, 64, 64)  # (B, T, C, H, W)
    with torch.no_grad():
        tokens = tower(pixels)
        reference = _backbone(checkpoint)(pixel_values=rearrange(pixels, "b t c h w -> (b t) c h w"))
    assert tokens.shape == (2, 3, 1 + 8 * 8, 32)  # (B, T, pooled + h*w, C)
    # Token 0 is the backbone's pooled vector; then the last feature map's cells, row-major.
    assert torch.equal(tokens[:, :, 0], rearrange(reference.pooler_output.flatten(1), "(b t) c -> b t c", b=2))
    assert torch.equal(tokens[:, :, 1:], rearrange(reference.last_hidden_state, "(b t) c h w -> b t (h w) c", b=2))


def test_conv_tower_select_and_feature_layer():
    pixels = torch.randn(1, 2, 3, 64, 64)
    cases = {  # (kind, select, feature_layer) -> (tokens per frame, width, has_cls)
        ("convnext", "patch", -1): (64, 32, True),
        ("convnext", "pooled", -1): (1, 32, True),
        ("convnext", "pooled", -2): (1, 32, False),  # pooled is the pooler output, whatever the layer
        ("convnext", "all", -2): (16 * 16, 16, False),  # stage 1: stride 4, no pooled vector of its own
        ("convnextv2", "all", 1): (16 * 16, 16, False),
        ("resnet", "all", 0): (16 * 16, 8, False),  # the stem: embedding_size channels
        ("resnet", "patch", -1): (64, 32, True),
    }
    for (kind, select, layer), (tokens, width, has_cls) in cases.items():
        tower = VisionTower(conv_vision(kind, image_size=64, select=select, feature_layer=layer))
        assert (tower.tokens_per_frame, tower.hidden_size, tower.has_cls) == (tokens, width, has_cls), (kind, select, layer)
        assert tower(pixels).shape == (1, 2, tokens, width)
    # Deeper backbones: the grid follows the total stride of the chosen stage.
    deep = tiny_conv_config("convnext", num_stages=4, depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32])
    tower = VisionTower(VisionTowerConfig(hf_config=deep.to_dict(), pixel=PixelConfig(image_size=64)))
    assert tower(pixels).shape == (1, 2, 1 + 2 * 2, 32)  # stride 32: 64 px -> 2x2
    strided = tiny_conv_config("resnet", downsample_in_first_stage=True)
    tower = VisionTower(VisionTowerConfig(hf_config=strided.to_dict(), pixel=PixelConfig(image_size=64)))
    assert tower(pixels).shape == (1, 2, 1 + 4 * 4, 32)  # stride 16


def test_conv_tower_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(ModelConfigError, match=r"feature_layer: ConvNextConfig has 3 hidden states \(stem \+ stages\).*got 3"):
        VisionTower(conv_vision("convnext", feature_layer=3))
    with pytest.raises(ModelConfigError, match="image_size: 36 px is not a multiple of ConvNextConfig's total stride 8"):
        VisionTower(conv_vision("convnext", image_size=36))
    with pytest.raises(ModelConfigError, match="ResNetConfig does not say its input size and no checkpoint was named"):
        VisionTower(VisionTowerConfig(hf_config=tiny_conv_config("resnet").to_dict()))
    ResNetModel(tiny_conv_config("resnet")).save_pretrained(tmp_path / "resnet")  # no preprocessor_config.json
    with pytest.raises(ModelConfigError, match="the checkpoint has no preprocessor_config.json; set vision.pixel"):
        VisionTower(VisionTowerConfig(pretrained=str(tmp_path / "resnet")))
    with pytest.raises(ModelConfigError, match=r"model type 'bert' \(BertConfig\) is neither a ViT-style vision model"):
        VisionTower(VisionTowerConfig(hf_config={"model_type": "bert"}))


def test_conv_pixels_follow_the_checkpoint_processor():
    """frames_to_pixel_values with the settings read from a ConvNeXt processor config is close
    to what transformers' ConvNextImageProcessor makes: crop_pct below 384 px, a warp at 384."""
    from transformers.models.convnext.image_processing_pil_convnext import (
        ConvNextImageProcessorPil,
    )

    h, w = 90, 120
    yy, xx = np.mgrid[0:h, 0:w]
    frame = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 255 / (h + w)], -1).astype(np.uint8)  # smooth RGB
    for side, resize in ((64, "shortest_edge"), (384, "exact")):
        processor = ConvNextImageProcessorPil(size={"shortest_edge": side}, crop_pct=0.875, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD))
        pixel = pixel_config_from_processor_dict(processor.to_dict(), image_size=224)
        assert (pixel.image_size, pixel.resize, pixel.crop_pct) == (side, resize, 0.875 if side < 384 else 1.0)
        reference = torch.as_tensor(processor(frame, return_tensors="np")["pixel_values"][0])  # (3, S, S)
        ours = frames_to_pixel_values(frame[None], pixel)[0, 0]
        assert ours.shape == reference.shape and (ours - reference).abs().max() < 0.05, side
    # The older hub format ("size": 224) reads the same way.
    assert pixel_config_from_processor_dict({**HUB_PROCESSOR, "size": 224}, image_size=0).crop_pct == 0.875
    with pytest.raises(ModelConfigError, match=r"crop_pct: must be in \(0, 1\], got 1.5"):
        PixelConfig(crop_pct=1.5)


def _grid_encoder_specs(has_cls: bool) -> list[dict]:
    return [
        {"_component_": "videovlm.models.temporal.SpatialPool", "has_cls_token": has_cls, "keep_cls_token": has_cls, "max_frames": 4},
        {"_component_": "videovlm.models.temporal.Conv3dDownsample", "has_cls_token": has_cls},
        {"_component_": "videovlm.models.temporal.DividedSpaceTime", "max_frames": 4, "num_layers": 1},
    ]


ENCODER_SPECS = [
    {"_component_": "videovlm.models.temporal.MeanPool"},
    {"_component_": "videovlm.models.temporal.MeanPool", "pool_tokens": True},
    {"_component_": "videovlm.models.temporal.FrameTransformer", "max_frames": 4, "num_layers": 1},
    {"_component_": "videovlm.models.temporal.FrameTransformer", "pool_patches": False, "max_frames": 4, "num_layers": 1},
    {"_component_": "videovlm.models.temporal.VideoQFormer", "num_queries": 3, "max_frames": 4, "num_layers": 1, "num_heads": 2},
    {"_component_": "videovlm.models.temporal.PerceiverResampler", "num_latents": 3, "max_frames": 4, "num_layers": 1, "num_heads": 2},
    {"_component_": "videovlm.models.temporal.InstructVideoQFormer", "vocab_size": 20, "num_queries": 3, "max_frames": 4, "num_layers": 1, "num_heads": 2},
]


@pytest.mark.parametrize("select", ["all", "patch"])
def test_every_temporal_encoder_reads_conv_tower_tokens(select):
    torch.manual_seed(0)
    tower = VisionTower(conv_vision("convnext", image_size=32, select=select)).eval()  # 4x4 grid (+ pooled)
    pixels = torch.randn(2, 4, 3, 32, 32)
    frame_mask = torch.tensor([[True, True, True, False], [True] * 4])
    with torch.no_grad():
        tokens = tower(pixels)  # (B, T, N, D)
        feature_map = tower.model(pixel_values=rearrange(pixels, "b t c h w -> (b t) c h w")).last_hidden_state
    # The grid encoders' view of the tokens is the backbone's own feature map.
    has_cls = tower.has_cls and select == "all"
    cls_token, grid = split_patch_grid(tokens, has_cls_token=has_cls, owner="test")
    assert torch.equal(grid, rearrange(feature_map, "(b t) c h w -> b t c h w", b=2)) and (cls_token is not None) == has_cls
    specs = ENCODER_SPECS + _grid_encoder_specs(has_cls)
    covered = {spec["_component_"].rsplit(".", 1)[-1] for spec in specs}
    every = {name for name in temporal_package.__all__ if inspect.isclass(c := getattr(temporal_package, name))
             and issubclass(c, TemporalEncoder) and not inspect.isabstract(c)}  # fmt: skip
    assert covered == every
    for spec in specs:
        encoder = build_temporal_encoder(spec, input_dim=tower.hidden_size).eval()
        instruction = {"instruction_ids": torch.tensor([[1, 5, 7], [1, 9, 0]]), "instruction_mask": torch.tensor([[1, 1, 1], [1, 1, 0]])}
        with torch.no_grad():
            video = encoder(tokens, frame_mask, **(instruction if encoder.reads_instruction else {}))
        assert video.tokens.shape == (2, encoder.num_output_tokens(4, tower.tokens_per_frame), encoder.output_dim), spec
        assert torch.isfinite(video.tokens).all(), spec


def _family(name: str, tokenizer, vision: VisionTowerConfig):
    """A micro model of the family (micro LMs of the QA tests) on the given tower."""
    torch.manual_seed(0)
    if name.startswith("videollama"):
        temporal = {"_component_": "videovlm.models.temporal.VideoQFormer", "num_queries": 2, "max_frames": 8, "num_layers": 1, "num_heads": 2}
        qformer = ImageQFormerConfig(num_queries=2, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
        if name == "videollama_grid":  # a grid encoder on the pooled-first layout
            temporal, qformer = {"_component_": "videovlm.models.temporal.Conv3dDownsample", "has_cls_token": True}, None
        config = VideoLlamaConfig(vision=vision, llm=micro_language("causal", tokenizer), temporal=temporal, image_qformer=qformer, max_frames=8)
        return VideoLlamaModel(config, tokenizer=tokenizer)
    if name == "videoofa":
        config = VideoOFAConfig(vision=vision, seq2seq=micro_language("seq2seq", tokenizer), temporal={"_component_": "videovlm.models.temporal.SpatialPool", "stride": 2, "keep_cls_token": True})
        return VideoOFAModel(config, tokenizer=tokenizer)
    vision.select = "pooled"
    return VideoBertModel(VideoBertConfig(vision=vision, bert=micro_language("masked", tokenizer), num_visual_words=4, max_frames=8), tokenizer=tokenizer)


@pytest.mark.parametrize(
    "family, kind", [("videollama", "convnext"), ("videollama_grid", "resnet"), ("videoofa", "convnextv2"), ("videobert", "convnext")]
)
def test_families_train_and_round_trip_with_a_conv_tower(family, kind, tokenizer, frames, tmp_path):
    model = _family(family, tokenizer, conv_vision(kind))
    batch = qa_and_caption_batch(model, frames)
    assert batch["pixel_values"].shape[-2:] == (32, 32)
    # The default pattern freezes the conv tower (eval mode, so BatchNorm keeps its statistics).
    set_trainable(model, model.DEFAULT_TRAINABLE)
    model.train()
    loss = model(**batch).loss
    loss.backward()
    assert torch.isfinite(loss) and not model.vision.training
    assert all(p.grad is None for p in model.vision.parameters())
    model.zero_grad(set_to_none=True)
    # Named by its part, the tower trains (VideoBERT's visual words are nearest-centroid ids:
    # no gradient flows back through them, so there the tower is only unfrozen).
    set_trainable(model, ["vision", *model.DEFAULT_TRAINABLE])
    model(**batch).loss.backward()
    assert model.vision.training and all(p.requires_grad for p in model.vision.parameters())
    assert family == "videobert" or all(p.grad is not None for p in model.vision.parameters())
    # Saved with its config dict and pixel settings; reloaded bit-identically, offline.
    model.eval()
    model.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())["vision"]
    assert saved["pretrained"] is None and saved["hf_config"]["model_type"] == kind and saved["pixel"]["image_size"] == 32
    loaded = load_pretrained(tmp_path / "saved")
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)


def test_convnext_preset_names_a_transformers_checkpoint():
    from transformers import ConvNextConfig

    from videovlm.models.presets import videollama_7b, videollama_convnext_7b
    from videovlm.models.videollama import VideoLlamaConfig
    from videovlm.models.vision_backbones import conv_layout

    preset = videollama_convnext_7b()
    assert preset.vision.pretrained == "facebook/convnext-large-384-22k-1k" and preset.vision.select == "patch"
    assert preset.llm == videollama_7b().llm and preset.image_qformer == videollama_7b().image_qformer
    assert config_from_dict(VideoLlamaConfig, json.loads(json.dumps(config_to_dict(preset)))) == preset
    # That checkpoint's config (ConvNeXt-L): at its 384 px, 12x12 = 144 tokens of 1536 channels per frame.
    large = ConvNextConfig(depths=[3, 3, 27, 3], hidden_sizes=[192, 384, 768, 1536], image_size=384)
    layout = conv_layout(large, image_size=384, feature_layer=preset.vision.feature_layer)
    assert (layout.grid_side, layout.width) == (12, 1536)
    wider = videollama_convnext_7b(image_size=768)  # ConvLLaVA's resolution: 24x24 = 576 tokens
    assert wider.vision.pixel == PixelConfig(image_size=768, resize="exact", mean=IMAGENET_MEAN, std=IMAGENET_STD)
    assert conv_layout(large, image_size=768, feature_layer=-1).grid_side == 24
