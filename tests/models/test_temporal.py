"""Temporal encoders: shapes, padded-frame invariance, order sensitivity, gradients, config round-trip."""

from __future__ import annotations

import copy
import inspect
import json
import math
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from videovlm.models.temporal import (
    Conv3dDownsample,
    DividedSpaceTime,
    DividedSpaceTimeConfig,
    FrameTransformer,
    FrameTransformerConfig,
    InstructVideoQFormer,
    MeanPool,
    MeanPoolConfig,
    PerceiverResampler,
    PerceiverResamplerConfig,
    SpatialPool,
    SpatialPoolConfig,
    TemporalConfigError,
    TemporalEncoder,
    TemporalInputError,
    VideoQFormer,
    VideoQFormerConfig,
)

BATCH, FRAMES, REAL_FRAMES, DIM, OUT_DIM = 2, 8, 5, 32, 24
TOKENS = 17  # CLS + a 4x4 patch grid, the CLIP layout


@dataclass(frozen=True)
class Case:
    """One encoder configuration under test: the class and its config's fields.

    ``tokens_per_output_frame``: for encoders whose output is a sequence of per-frame (or
    per-window) groups, the group size, used to check that a reversed video gives more than
    a re-ordering of the same groups; None for encoders whose tokens summarise the whole video.
    """

    encoder_class: type[TemporalEncoder]
    fields: dict[str, Any]
    tokens_per_output_frame: int | None

    def build(self) -> TemporalEncoder:
        return self.encoder_class(self.encoder_class.config_class(**self.fields))


CASES = {
    "mean": Case(MeanPool, {"input_dim": DIM, "output_dim": OUT_DIM}, None),
    "mean_pool_tokens": Case(MeanPool, {"input_dim": DIM, "pool_tokens": True}, None),
    "frame_transformer": Case(FrameTransformer, {"input_dim": DIM, "output_dim": OUT_DIM, "max_frames": FRAMES, "num_layers": 1}, 1),
    "frame_transformer_all_tokens": Case(
        FrameTransformer, {"input_dim": DIM, "pool_patches": False, "max_frames": FRAMES, "num_layers": 1}, TOKENS
    ),
    "video_qformer": Case(
        VideoQFormer, {"input_dim": DIM, "output_dim": OUT_DIM, "num_queries": 6, "max_frames": FRAMES, "hidden_size": 16}, None
    ),
    "video_qformer_grid_norm": Case(
        VideoQFormer,
        {"input_dim": DIM, "num_queries": 4, "max_frames": FRAMES, "hidden_size": 16, "input_norm": True, "grid_positions": True, "has_cls_token": True},
        None,
    ),
    "divided_space_time": Case(
        DividedSpaceTime, {"input_dim": DIM, "output_dim": OUT_DIM, "max_frames": FRAMES, "num_layers": 1}, TOKENS
    ),
    "divided_space_time_pooled": Case(DividedSpaceTime, {"input_dim": DIM, "pool_time": True, "max_frames": FRAMES, "num_layers": 1}, None),
    "perceiver": Case(
        PerceiverResampler, {"input_dim": DIM, "output_dim": OUT_DIM, "num_latents": 6, "max_frames": FRAMES, "num_layers": 1}, None
    ),
    "spatial_pool": Case(SpatialPool, {"input_dim": DIM, "output_dim": OUT_DIM, "has_cls_token": True, "max_frames": FRAMES}, 4),
    "spatial_pool_keep_cls_max": Case(
        SpatialPool, {"input_dim": DIM, "has_cls_token": True, "keep_cls_token": True, "mode": "max", "max_frames": FRAMES}, 5
    ),
    "conv3d": Case(Conv3dDownsample, {"input_dim": DIM, "output_dim": OUT_DIM, "has_cls_token": True}, 4),
}
# Every encoder class once (the instruction-aware one needs instruction ids to run, so it is
# only built here; tests/models/test_instruct_qformer.py runs it).
DECLARATIONS = {
    **{name: (case.encoder_class, case.fields) for name, case in CASES.items()},
    "instruct_video_qformer": (InstructVideoQFormer, {"input_dim": DIM, "num_queries": 4, "max_frames": FRAMES, "hidden_size": 16, "vocab_size": 50}),
}


def build(name: str) -> TemporalEncoder:
    torch.manual_seed(0)
    return CASES[name].build()


def padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Row 0 has all frames real; row 1 has REAL_FRAMES real frames then large random garbage."""
    generator = torch.Generator().manual_seed(1)
    frames = torch.randn(BATCH, FRAMES, TOKENS, DIM, generator=generator)
    frames[1, REAL_FRAMES:] = 100.0 * torch.randn(FRAMES - REAL_FRAMES, TOKENS, DIM, generator=generator)
    mask = torch.ones(BATCH, FRAMES, dtype=torch.bool)
    mask[1, REAL_FRAMES:] = False
    return frames, mask


@pytest.mark.parametrize("name", CASES)
def test_output_shape_matches_num_output_tokens(name):
    encoder = build(name)
    frames, mask = padded_batch()
    out = encoder(frames, mask)
    expected_tokens = encoder.num_output_tokens(FRAMES, TOKENS)
    assert out.tokens.shape == (BATCH, expected_tokens, encoder.output_dim)
    assert out.mask.shape == (BATCH, expected_tokens) and out.mask.dtype == torch.bool
    assert out.mask[0].all()
    assert torch.isfinite(out.tokens).all()
    # No mask means every frame is real.
    assert torch.equal(encoder(frames[:1]).tokens, encoder(frames[:1], mask[:1]).tokens)


@pytest.mark.parametrize("name", CASES)
def test_padded_frames_do_not_change_output(name):
    encoder = build(name)
    frames, mask = padded_batch()
    padded = encoder(frames, mask)
    alone = encoder(frames[1:, :REAL_FRAMES])
    real_tokens = encoder.num_output_tokens(REAL_FRAMES, TOKENS)
    assert alone.tokens.shape[1] == real_tokens and alone.mask.all()
    torch.testing.assert_close(padded.tokens[1, :real_tokens], alone.tokens[0], atol=1e-5, rtol=1e-5)
    assert padded.mask[1, :real_tokens].all()
    assert not padded.mask[1, real_tokens:].any()
    assert (padded.tokens[1, real_tokens:] == 0).all()
    # Different garbage, same answer; and NaN garbage does not leak either.
    frames[1, REAL_FRAMES:] = float("nan")
    torch.testing.assert_close(encoder(frames, mask).tokens, padded.tokens, atol=1e-6, rtol=1e-6)


def at_a_generic_point(encoder: TemporalEncoder) -> TemporalEncoder:
    """Every weight N(0, 0.3), LayerNorm scales 1 + N(0, 0.3): away from the init's symmetries."""
    with torch.no_grad():
        for param in encoder.parameters():
            param.normal_(std=0.3)
        for module in encoder.modules():
            if isinstance(module, torch.nn.LayerNorm) and module.weight is not None:
                module.weight.add_(1.0)  # a scale near 1, not near 0
    return encoder


@pytest.mark.parametrize("name", CASES)
def test_reversed_frame_order(name):
    """Reversing the frames changes the output of every encoder but MeanPool.

    Checked at a generic parameter point (every weight N(0, 0.3), LayerNorm scales 1 + N(0, 0.3)):
    BLIP-2's init (std 0.02) makes the Q-Former nearly constant at init, so its outputs differ
    by only ~1e-5 there; ``test_order_is_learnable`` checks the init point through training instead.
    """
    encoder = at_a_generic_point(build(name))
    frames = torch.randn(1, FRAMES, TOKENS, DIM, generator=torch.Generator().manual_seed(2))
    forward = encoder(frames).tokens
    backward = encoder(frames.flip(1)).tokens
    if isinstance(encoder, MeanPool):
        torch.testing.assert_close(backward, forward, atol=1e-6, rtol=1e-6)
        return
    assert (backward - forward).abs().max() > 1e-2
    group = CASES[name].tokens_per_output_frame
    if group is not None:
        # Not merely the same per-frame outputs in reverse order: the encoder knows positions.
        regrouped = forward.reshape(1, -1, group, forward.shape[-1]).flip(1).reshape(forward.shape)
        assert (backward - regrouped).abs().max() > 1e-2


@pytest.mark.parametrize("name", ["mean", "video_qformer", "perceiver"])
def test_order_is_learnable(name):
    """From the real init, 40 Adam steps teach the encoder + a linear probe to tell clips from their reverse.

    MeanPool gives a clip and its reverse the same tokens, so its loss cannot go below ln 2.
    """
    encoder = build(name)
    tokens = 5  # fewer keys than the other tests: faster, and the ~25-step plateau is shorter
    probe = torch.nn.Linear(encoder.num_output_tokens(FRAMES, tokens) * encoder.output_dim, 1)
    clips = torch.randn(8, FRAMES, tokens, DIM, generator=torch.Generator().manual_seed(3))
    videos = torch.cat([clips, clips.flip(1)])  # (16, T, N, D)
    is_reversed = torch.cat([torch.zeros(8), torch.ones(8)])
    optimizer = torch.optim.Adam([*encoder.parameters(), *probe.parameters()], lr=1e-2)
    for _ in range(40):
        logits = probe(encoder(videos).tokens.flatten(1)).squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, is_reversed)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if name == "mean":
        assert loss.item() > math.log(2) - 1e-3
    else:
        assert loss.item() < 0.1  # measured < 0.01 for three seeds, after a 25-35 step plateau


@pytest.mark.parametrize("name", CASES)
def test_gradients_reach_every_trainable_parameter(name):
    encoder = build(name)
    frames, mask = padded_batch()
    frames.requires_grad_(True)
    out = encoder(frames, mask)
    (out.tokens * out.mask[..., None]).square().sum().backward()
    assert frames.grad is not None and frames.grad[:, :REAL_FRAMES].abs().sum() > 0
    assert (frames.grad[1, REAL_FRAMES:] == 0).all()  # padded frames are invisible, so no gradient
    for param_name, param in encoder.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, f"no gradient reaches {param_name}"


@pytest.mark.parametrize("name", CASES)
def test_trains_on_frame_tokens_that_need_no_grad(name):
    """Behind a frozen vision tower the tokens need no grad; only the encoder's parameters do
    (Conv3dDownsample used to crash here: torch's GroupNorm backward on a channels-last grid)."""
    encoder = build(name)
    if not list(encoder.parameters()):
        pytest.skip("nothing to train")
    frames, mask = padded_batch()
    out = encoder(frames, mask)
    (out.tokens * out.mask[..., None]).square().sum().backward()
    assert all(param.grad is not None for param in encoder.parameters())


@pytest.mark.parametrize("name", CASES)
def test_config_round_trip_through_json(name):
    encoder = build(name)
    as_json = json.dumps(encoder.config_dict())
    rebuilt = type(encoder).from_config(json.loads(as_json))
    assert rebuilt.config == encoder.config
    assert type(encoder).from_config(encoder.config).config == encoder.config
    rebuilt.load_state_dict(encoder.state_dict())
    frames, mask = padded_batch()
    torch.testing.assert_close(rebuilt(frames, mask).tokens, encoder(frames, mask).tokens)
    assert encoder.component_path() == f"videovlm.models.temporal.{type(encoder).__name__}"


@pytest.mark.parametrize("name", DECLARATIONS)
def test_the_config_class_is_the_one_declaration(name):
    """An encoder takes its config dataclass and nothing else: built from a dict of the fields
    or from the dataclass, it is the same encoder; keywords, a dict or another class's config
    are a TypeError that says what to pass."""
    cls, fields = DECLARATIONS[name]
    assert list(inspect.signature(cls.__init__).parameters) == ["self", "config"]
    torch.manual_seed(0)
    from_dict = cls.from_config(fields)
    torch.manual_seed(0)
    config = cls.config_class(**fields)
    direct = cls(config)
    assert from_dict.config_dict() == direct.config_dict() == {**direct.config_dict(), **fields}
    expected, actual = from_dict.state_dict(), direct.state_dict()
    assert list(expected) == list(actual) and all(torch.equal(expected[key], actual[key]) for key in expected)
    config.input_dim = DIM + 1  # the encoder keeps a copy
    assert direct.config_dict()["input_dim"] == DIM
    with pytest.raises(TemporalConfigError, match=r"unknown key\(s\) \['bogus'\]"):
        cls.from_config({**fields, "bogus": 1})
    advice = rf"{cls.__name__} takes its config only: {cls.__name__}\({cls.config_class.__name__}\(\.\.\.\)\), or {cls.__name__}\.from_config"
    with pytest.raises(TypeError, match=advice + ".*got keyword argument"):
        cls(**fields)
    with pytest.raises(TypeError, match=advice + ".*got dict"):
        cls(fields)
    other = SpatialPoolConfig(input_dim=DIM) if cls is MeanPool else MeanPoolConfig(input_dim=DIM)
    with pytest.raises(TypeError, match=advice + f".*got {type(other).__name__}"):
        cls(other)
    assert cls(config=cls.config_class(**fields)).config_dict() == direct.config_dict()
    clone = copy.deepcopy(direct)  # copy rebuilds the instance without arguments
    assert clone.config_dict() == direct.config_dict()
    assert all(torch.equal(clone.state_dict()[key], tensor) for key, tensor in actual.items())


def test_bad_configs_name_the_field():
    with pytest.raises(TemporalConfigError, match="num_heads"):
        FrameTransformerConfig(input_dim=30, num_heads=4)
    with pytest.raises(TemporalConfigError, match="max_frames"):
        VideoQFormerConfig(input_dim=DIM, max_frames=0)
    with pytest.raises(TemporalConfigError, match="mode"):
        SpatialPool.from_config({"input_dim": DIM, "mode": "median"})
    with pytest.raises(TemporalConfigError, match="bogus"):
        MeanPool.from_config({"input_dim": DIM, "bogus": 1})
    with pytest.raises(TemporalConfigError, match="input_dim"):
        PerceiverResampler.from_config({"num_latents": 4})
    with pytest.raises(TemporalConfigError, match=r"num_queries must be <class 'int'>, got '8'"):
        VideoQFormer.from_config({"input_dim": DIM, "num_queries": "8"})
    with pytest.raises(TemporalConfigError, match="pool_time"):
        DividedSpaceTimeConfig(input_dim=DIM, pool_time=1)
    with pytest.raises(TemporalConfigError, match="dropout"):
        PerceiverResamplerConfig(input_dim=DIM, dropout=1.5)
    with pytest.raises(TemporalConfigError, match="expects Conv3dDownsampleConfig or a mapping, got SpatialPoolConfig"):
        Conv3dDownsample.from_config(SpatialPoolConfig(input_dim=DIM))


def test_grid_positions_let_the_qformer_see_where_a_token_is():
    """The Q-Former's cross-attention is blind to the order of its keys: without a grid code,
    moving every patch of a frame to another cell gives the same video tokens (so a conv
    tower's map, whose tokens do not carry their cell, loses where things are); with it, not."""
    frames, mask = padded_batch()
    cells = torch.randperm(TOKENS - 1, generator=torch.Generator().manual_seed(3)) + 1
    moved = torch.cat([frames[:, :, :1], frames[:, :, cells]], dim=2)  # CLS stays, patches change cells
    for grid_positions in (False, True):
        torch.manual_seed(0)
        encoder = VideoQFormer(VideoQFormerConfig(input_dim=DIM, num_queries=4, max_frames=FRAMES, hidden_size=16, grid_positions=grid_positions, has_cls_token=True))
        encoder = at_a_generic_point(encoder).eval()  # (BLIP-2's init is nearly constant)
        difference = (encoder(frames, mask).tokens - encoder(moved, mask).tokens).abs().max().item()
        assert difference > 1e-2 if grid_positions else difference < 1e-5, (grid_positions, difference)


def test_without_frame_positions_the_qformer_is_order_blind():
    """frame_positions=False: the order-blind control of the same encoder (any shuffle of the
    frames gives the same video tokens), still bounded by max_frames."""
    frames, mask = padded_batch()
    encoder = at_a_generic_point(VideoQFormer(VideoQFormerConfig(input_dim=DIM, num_queries=4, max_frames=FRAMES, hidden_size=16, frame_positions=False))).eval()
    assert encoder.frame_position is None
    shuffled = frames[:, torch.randperm(FRAMES, generator=torch.Generator().manual_seed(4))]
    torch.testing.assert_close(encoder(shuffled[:1]).tokens, encoder(frames[:1]).tokens, atol=1e-5, rtol=1e-5)
    with pytest.raises(TemporalInputError, match="max_frames"):
        encoder(torch.randn(1, FRAMES + 1, TOKENS, DIM))


def test_input_norm_makes_the_qformer_blind_to_the_towers_scale():
    frames, mask = padded_batch()
    torch.manual_seed(0)
    encoder = VideoQFormer(VideoQFormerConfig(input_dim=DIM, num_queries=4, max_frames=FRAMES, hidden_size=16, input_norm=True)).eval()
    torch.testing.assert_close(encoder(frames, mask).tokens, encoder(40.0 * frames + 3.0, mask).tokens, atol=1e-4, rtol=1e-4)


def test_grid_positions_need_a_square_grid():
    encoder = VideoQFormer(VideoQFormerConfig(input_dim=DIM, num_queries=4, max_frames=FRAMES, grid_positions=True))
    with pytest.raises(TemporalInputError, match="square grid"):
        encoder(torch.randn(1, 2, TOKENS, DIM))  # 17 tokens: a CLS first, but has_cls_token is False


def test_bad_inputs_give_clear_errors():
    encoder = build("video_qformer")
    frames, mask = padded_batch()
    with pytest.raises(TemporalInputError, match="max_frames"):
        encoder(torch.randn(1, FRAMES + 1, TOKENS, DIM))
    with pytest.raises(TemporalInputError, match="input_dim"):
        encoder(torch.randn(1, 2, TOKENS, DIM + 1))
    with pytest.raises(TemporalInputError, match=r"\(B, T, N, D\)"):
        encoder(torch.randn(1, TOKENS, DIM))
    with pytest.raises(TemporalInputError, match="bool"):
        encoder(frames, mask.long())
    with pytest.raises(TemporalInputError, match="appended at the end"):
        encoder(frames, mask.flip(1))
    with pytest.raises(TemporalInputError, match=r"batch item\(s\) \[1\]"):
        encoder(frames, torch.stack([mask[0], torch.zeros_like(mask[1])]))
    with pytest.raises(TemporalInputError, match="square grid"):
        build("spatial_pool")(frames[:, :, 1:])  # 16 tokens, but the encoder expects a CLS first
