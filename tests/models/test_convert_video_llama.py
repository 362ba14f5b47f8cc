"""Released Video-LLaMA checkpoints: a .pth with their key names converts onto our parts, every
key is used, and the converted model's video tokens equal a reference forward written from
their code (video_llama/models/video_llama.py + BLIP-2's BERT Q-Former)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

D, HEADS, FFN, QUERIES, POSITIONS, LLM_D = 32, 2, 64, 4, 8, 64  # their 768 / 12 / 3072 / 32 / 32, tiny


@pytest.fixture(scope="module")
def front_and_llm(tmp_path_factory):
    """A tiny BLIP-2 checkpoint (vision tower + image Q-Former + an OPT) and a tiny Llama, saved."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2QFormerConfig, Blip2VisionConfig, LlamaConfig, LlamaForCausalLM, OPTConfig

    from videovlm.models import train_tokenizer

    root = tmp_path_factory.mktemp("released")
    torch.manual_seed(0)
    vision = Blip2VisionConfig(hidden_size=D, intermediate_size=FFN, num_hidden_layers=1, num_attention_heads=HEADS, image_size=32, patch_size=8)
    qformer = Blip2QFormerConfig(hidden_size=D, num_hidden_layers=2, num_attention_heads=HEADS, intermediate_size=FFN, encoder_hidden_size=D)
    text = OPTConfig(hidden_size=D, num_hidden_layers=1, ffn_dim=FFN, num_attention_heads=HEADS, vocab_size=50, word_embed_proj_dim=D)
    blip2 = Blip2ForConditionalGeneration(Blip2Config(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(), text_config=text.to_dict(), num_query_tokens=QUERIES))
    blip2.save_pretrained(root / "blip2")
    tokenizer = train_tokenizer(["what is happening in the video? a man walks"], vocab_size=80)
    llama = LlamaForCausalLM(LlamaConfig(hidden_size=LLM_D, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                         vocab_size=len(tokenizer), max_position_embeddings=128))
    llama.save_pretrained(root / "llm")
    tokenizer.save_pretrained(root / "llm")
    return root / "blip2", root / "llm"


def _released_state(generator) -> dict[str, torch.Tensor]:
    """Tensors named exactly as Video-LLaMA's trainable parts are saved ({"model": ...})."""
    def t(*shape):
        return torch.randn(*shape, generator=generator) * 0.2

    state = {"video_frame_position_embedding.weight": t(POSITIONS, D), "video_query_tokens": t(1, QUERIES, D),
             "video_Qformer.bert.embeddings.LayerNorm.weight": 1 + t(D), "video_Qformer.bert.embeddings.LayerNorm.bias": t(D),
             "video_Qformer.bert.embeddings.position_ids": torch.arange(512)[None],
             "llama_proj.weight": t(LLM_D, D), "llama_proj.bias": t(LLM_D),
             "audio_query_tokens": t(1, 8, D)}  # the audio branch: skipped
    for i in range(2):
        p = f"video_Qformer.bert.encoder.layer.{i}."
        for block in ("attention", "crossattention"):
            for name in ("query", "key", "value"):
                state[f"{p}{block}.self.{name}.weight"], state[f"{p}{block}.self.{name}.bias"] = t(D, D), t(D)
            state[f"{p}{block}.output.dense.weight"], state[f"{p}{block}.output.dense.bias"] = t(D, D), t(D)
            state[f"{p}{block}.output.LayerNorm.weight"], state[f"{p}{block}.output.LayerNorm.bias"] = 1 + t(D), t(D)
        state[f"{p}intermediate_query.dense.weight"], state[f"{p}intermediate_query.dense.bias"] = t(FFN, D), t(FFN)
        state[f"{p}output_query.dense.weight"], state[f"{p}output_query.dense.bias"] = t(D, FFN), t(D)
        state[f"{p}output_query.LayerNorm.weight"], state[f"{p}output_query.LayerNorm.bias"] = 1 + t(D), t(D)
    return state


def _attention(w, prefix, hidden, context):
    """BLIP-2's BertSelfAttention + BertSelfOutput (post-LayerNorm residual)."""
    def lin(x, name):
        return F.linear(x, w[f"{prefix}.self.{name}.weight"], w[f"{prefix}.self.{name}.bias"])

    def heads(x):
        return x.view(x.shape[0], x.shape[1], HEADS, D // HEADS).transpose(1, 2)

    q, k, v = heads(lin(hidden, "query")), heads(lin(context, "key")), heads(lin(context, "value"))
    probs = (q @ k.transpose(-1, -2) / math.sqrt(D // HEADS)).softmax(-1)
    ctx = (probs @ v).transpose(1, 2).reshape(hidden.shape)
    out = F.linear(ctx, w[f"{prefix}.output.dense.weight"], w[f"{prefix}.output.dense.bias"])
    return F.layer_norm(out + hidden, (D,), w[f"{prefix}.output.LayerNorm.weight"], w[f"{prefix}.output.LayerNorm.bias"], eps=1e-12)


def _their_video_branch(w, q_hidden_state, batch, frames):
    """encode_videoQformer_visual from q_hidden_state (the image Q-Former's output) on."""
    positions = w["video_frame_position_embedding.weight"][torch.arange(frames)][None].expand(batch, -1, -1)  # (b, t, h)
    frame_hidden = q_hidden_state.view(batch, frames, QUERIES, D) + positions.unsqueeze(-2)
    frame_hidden = frame_hidden.reshape(batch, frames * QUERIES, D)  # 'b t q h -> b (t q) h'
    hidden = w["video_query_tokens"].expand(batch, -1, -1)
    hidden = F.layer_norm(hidden, (D,), w["video_Qformer.bert.embeddings.LayerNorm.weight"], w["video_Qformer.bert.embeddings.LayerNorm.bias"], eps=1e-12)
    for i in range(2):
        p = f"video_Qformer.bert.encoder.layer.{i}"
        hidden = _attention(w, f"{p}.attention", hidden, hidden)
        hidden = _attention(w, f"{p}.crossattention", hidden, frame_hidden)  # cross_attention_freq = 1
        inner = F.gelu(F.linear(hidden, w[f"{p}.intermediate_query.dense.weight"], w[f"{p}.intermediate_query.dense.bias"]))
        out = F.linear(inner, w[f"{p}.output_query.dense.weight"], w[f"{p}.output_query.dense.bias"])
        hidden = F.layer_norm(out + hidden, (D,), w[f"{p}.output_query.LayerNorm.weight"], w[f"{p}.output_query.LayerNorm.bias"], eps=1e-12)
    return F.linear(hidden, w["llama_proj.weight"], w["llama_proj.bias"])  # inputs_llama


def _model(front_and_llm):
    from videovlm.models.videollama import VideoLlamaModel
    from videovlm.models.videollama.presets import videollama_released

    blip2, llm = front_and_llm
    config = videollama_released(blip2=str(blip2), llm=str(llm), num_video_queries=QUERIES, max_frame_pos=POSITIONS,
                                 video_heads=HEADS, video_intermediate_size=FFN)
    return VideoLlamaModel(config).eval()


def test_converted_video_tokens_equal_their_forward(front_and_llm, tmp_path):
    from transformers import Blip2ForConditionalGeneration

    from videovlm.models import load_pretrained
    from videovlm.models.videollama.convert import load_released

    state = _released_state(torch.Generator().manual_seed(1))
    path = tmp_path / "finetune-vicuna7b-v2.pth"
    torch.save({"model": state}, path)
    model = _model(front_and_llm)
    conversion = load_released(model, path)
    assert sorted(conversion.skipped) == ["audio_query_tokens", "video_Qformer.bert.embeddings.position_ids"]
    assert len(conversion.tensors) + len(conversion.skipped) == len(state)  # every key used or skipped by rule
    pixels = torch.randn(2, 3, 3, 32, 32)  # (B, T, C, H, W)
    with torch.no_grad():
        ours, mask = model.encode_video(pixels)  # (B, M, D_llm)
        blip2 = Blip2ForConditionalGeneration.from_pretrained(front_and_llm[0]).eval()
        flat = pixels.flatten(0, 1)
        image_embeds = blip2.vision_model(pixel_values=flat).last_hidden_state  # ln_vision(visual_encoder(image))
        q_hidden = blip2.qformer(query_embeds=blip2.query_tokens.expand(flat.shape[0], -1, -1), encoder_hidden_states=image_embeds).last_hidden_state
        theirs = _their_video_branch(state, q_hidden, batch=2, frames=3)
    assert ours.shape == (2, QUERIES, LLM_D) and mask.all()
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    reloaded = load_pretrained(model.save_pretrained(tmp_path / "converted"))
    with torch.no_grad():
        torch.testing.assert_close(reloaded.encode_video(pixels)[0], ours)


def test_bad_released_files_are_refused_with_the_reason(front_and_llm, tmp_path):
    import os

    from videovlm.models.videollama.convert import ReleasedCheckpointError, load_released

    model = _model(front_and_llm)
    state = _released_state(torch.Generator().manual_seed(1))
    unknown = tmp_path / "unknown.pth"
    torch.save({"model": {**state, "llama_model.lm_head.weight": torch.zeros(2)}}, unknown)
    with pytest.raises(ReleasedCheckpointError, match="tensors videovlm cannot place.*llama_model.lm_head.weight"):
        load_released(model, unknown)
    wrong = tmp_path / "wrong.pth"
    torch.save({"model": {**state, "video_query_tokens": torch.zeros(1, QUERIES + 1, D)}}, wrong)
    with pytest.raises(ReleasedCheckpointError, match="wrong shape .*temporal.query_tokens"):
        load_released(model, wrong)
    flat = tmp_path / "flat.pth"
    torch.save(state, flat)
    with pytest.raises(ReleasedCheckpointError, match=r"expected \{'model'"):
        load_released(model, flat)

    class Payload:  # a pickle that would run code: refused, never unpickled
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pth"
    torch.save({"model": state, "extra": Payload()}, evil)
    with pytest.raises(ReleasedCheckpointError, match="refused: torch.load\\(weights_only=True\\) cannot read it"):
        load_released(model, evil)


def test_cli_converts_into_a_model_folder(front_and_llm, tmp_path, capsys):
    from videovlm.cli import main
    from videovlm.models import load_pretrained

    path = tmp_path / "ckpt.pth"
    state = _released_state(torch.Generator().manual_seed(2))
    torch.save({"model": state}, path)
    blip2, llm = front_and_llm
    out = tmp_path / "out"
    args = ["convert", "video-llama", str(path), "--blip2", str(blip2), "--llm", str(llm), "--out", str(out)]
    # the released shape (32 queries, 12 heads) does not fit these tiny tensors: refused, nothing written
    assert main(args) == 2 and "num_heads=12" in capsys.readouterr().err
    assert not out.exists()
    tiny = ["--video-queries", str(QUERIES), "--frame-positions", str(POSITIONS), "--video-heads", str(HEADS), "--video-intermediate-size", str(FFN)]
    assert main([*args, *tiny]) == 0
    printed = capsys.readouterr().out
    assert f"converted {len(state) - 2} tensors" in printed and "(skipped 2: audio branch / constant buffers)" in printed
    converted = load_pretrained(out).state_dict()
    assert torch.equal(converted["temporal.query_tokens"], state["video_query_tokens"])
    assert torch.equal(converted["projector.layers.0.weight"], state["llama_proj.weight"])
    assert main([*args, *tiny]) == 2 and "not an empty folder" in capsys.readouterr().err  # never over an existing folder
