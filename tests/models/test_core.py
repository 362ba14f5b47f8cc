"""Image-VLM core: configs, pixels, tokenizer, HF checkpoints through the real loading path, splicing, presets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoTokenizer,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPVisionModel,
    LlamaForCausalLM,
    SiglipVisionConfig,
    SiglipVisionModel,
    ViTConfig,
    ViTModel,
)

from videovlm.models import (
    IGNORE_INDEX,
    ModelConfigError,
    PixelConfig,
    VideoLlamaConfig,
    VisionTower,
    VisionTowerConfig,
    config_from_dict,
    config_to_dict,
    frames_to_pixel_values,
    load_pretrained,
    set_trainable,
    splice_visual_tokens,
    train_tokenizer,
)
from videovlm.models.pixels import CLIP_MEAN, CLIP_STD, PixelShapeError
from videovlm.models.presets import (
    tiny_clip_vision_config,
    tiny_llama_config,
    tiny_videollama,
    videobert_base,
    videollama_7b,
    videoofa_base,
)
from videovlm.models.qformer import ImageQFormer, ImageQFormerConfig
from videovlm.models.videobert import VideoBertConfig
from videovlm.models.videoofa import VideoOFAConfig

from .conftest import synthetic_sentences


def test_config_errors_name_the_key():
    good = config_to_dict(videollama_7b())
    assert config_from_dict(VideoLlamaConfig, json.loads(json.dumps(good))) == videollama_7b()
    with pytest.raises(ModelConfigError, match=r"^vision\.imag_size: unknown key for VisionTowerConfig"):
        config_from_dict(VideoLlamaConfig, {**good, "vision": {**good["vision"], "imag_size": 3}})
    with pytest.raises(ModelConfigError, match=r"^max_frames: expected int, got '8'"):
        config_from_dict(VideoLlamaConfig, {**good, "max_frames": "8"})
    with pytest.raises(ModelConfigError, match=r"^lora\.r: expected int"):
        config_from_dict(VideoLlamaConfig, {**good, "lora": {"r": 1.5}})
    with pytest.raises(ModelConfigError, match=r"^projector\.kind: expected one of \['linear', 'mlp'\]"):
        config_from_dict(VideoLlamaConfig, {**good, "projector": {"kind": "conv"}})
    with pytest.raises(ModelConfigError, match=r"^llm: missing required key"):
        config_from_dict(VideoLlamaConfig, {k: v for k, v in good.items() if k != "llm"})
    with pytest.raises(ModelConfigError, match="give exactly one of 'pretrained'"):
        VisionTower(VisionTowerConfig())


def test_real_presets_are_plans_only():
    # Built and validated without any download: only configs naming hub checkpoints.
    llama = videollama_7b()
    assert llama.vision.pretrained == "openai/clip-vit-large-patch14" and llama.llm.pretrained == "lmsys/vicuna-7b-v1.5"
    assert llama.temporal["_component_"] == "videovlm.models.temporal.VideoQFormer" and llama.image_qformer.num_queries == 32
    assert videoofa_base().seq2seq.pretrained == "facebook/bart-base"
    assert videobert_base().bert.pretrained == "bert-base-uncased"
    for cls, config in ((VideoOFAConfig, videoofa_base()), (VideoBertConfig, videobert_base())):
        assert config_from_dict(cls, json.loads(json.dumps(config_to_dict(config)))) == config
    with pytest.raises(ModelConfigError, match="llm.kind: Video-LLaMA needs a causal language model"):
        VideoLlamaConfig(vision=llama.vision, llm=videoofa_base().seq2seq)


def test_pixels_normalise_and_validate():
    frames = torch.full((2, 3, 90, 160, 3), 128, dtype=torch.uint8)  # (B, T, H, W, 3)
    config = PixelConfig(image_size=64)
    pixels = frames_to_pixel_values(frames, config)
    assert pixels.shape == (2, 3, 3, 64, 64)
    expected = (128 / 255 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert torch.allclose(pixels[0, 0, :, 10, 10], expected, atol=1e-5)
    assert frames_to_pixel_values(frames[0].numpy(), config).shape == (1, 3, 3, 64, 64)
    with pytest.raises(PixelShapeError, match="expected uint8 RGB, got dtype torch.float32"):
        frames_to_pixel_values(frames.float(), config)
    with pytest.raises(PixelShapeError, match=r"got shape \(3, 90, 160\)"):
        frames_to_pixel_values(frames[0, :, :, :, 0], config)


def test_tokenizer_roundtrip_and_determinism(tokenizer, tmp_path):
    again = train_tokenizer(synthetic_sentences(), vocab_size=400)
    assert again.get_vocab() == tokenizer.get_vocab()
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "###Human: <video> Which way does the RED star move?###Assistant: left</s>"
    assert loaded(text).input_ids == tokenizer(text).input_ids
    pieces = loaded.tokenize(text)
    assert pieces[:2] == ["###Human:", "<video>"] and "red" in pieces and pieces[-1] == "</s>"
    for special in ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>", "<video>", "<image>", "###Assistant:"):
        assert len(loaded.tokenize(special)) == 1
    with pytest.raises(ValueError, match=r"special_tokens: missing \['\[MASK\]'\]"):
        train_tokenizer(["a b"], special_tokens=("[PAD]", "[UNK]", "[CLS]", "[SEP]", "<s>", "</s>"))


def test_vision_towers_from_checkpoints(tmp_path):
    torch.manual_seed(0)
    pixels = torch.randn(2, 3, 3, 112, 112)  # (B, T, C, H, W)
    # A full CLIP image-text checkpoint (like openai/clip-vit-large-patch14) with its image processor.
    clip = CLIPModel(CLIPConfig(vision_config=tiny_clip_vision_config().to_dict(), text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 99}, projection_dim=32))
    clip.save_pretrained(tmp_path / "clip")
    CLIPImageProcessor(size={"shortest_edge": 112}, crop_size={"height": 112, "width": 112}, image_mean=[0.5] * 3, image_std=[0.25] * 3).save_pretrained(tmp_path / "clip")
    tower = VisionTower(VisionTowerConfig(pretrained=str(tmp_path / "clip")))
    assert isinstance(tower.model, CLIPVisionModel) and tower.tokens_per_frame == 50
    assert torch.equal(tower.model.embeddings.patch_embedding.weight, clip.vision_model.embeddings.patch_embedding.weight)
    assert tower.pixel == PixelConfig(image_size=112, resize="shortest_edge", mean=(0.5,) * 3, std=(0.25,) * 3)
    assert tower(pixels).shape == (2, 3, 50, 128)
    # SigLIP has no CLS token; ViT has one. Both load through the same from_pretrained path.
    siglip = SiglipVisionModel(SiglipVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2, image_size=112, patch_size=16))
    siglip.save_pretrained(tmp_path / "siglip")
    tower = VisionTower(VisionTowerConfig(pretrained=str(tmp_path / "siglip"), select="patch"))
    assert not tower.has_cls and tower(pixels).shape == (2, 3, 49, 64)
    vit = ViTModel(ViTConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2, image_size=112, patch_size=16))
    vit.save_pretrained(tmp_path / "vit")
    tower = VisionTower(VisionTowerConfig(pretrained=str(tmp_path / "vit"), select="patch", feature_layer=-2))
    assert tower.has_cls and tower(pixels).shape == (2, 3, 49, 64)
    with pytest.raises(ModelConfigError, match="vision.pretrained: cannot load a config"):
        VisionTower(VisionTowerConfig(pretrained=str(tmp_path / "missing")))


def test_videollama_from_hf_checkpoints_with_image_qformer(tokenizer, frames, tmp_path):
    torch.manual_seed(0)
    vision = CLIPVisionModel(tiny_clip_vision_config())
    vision.save_pretrained(tmp_path / "vision")
    llm = LlamaForCausalLM(tiny_llama_config(tokenizer=tokenizer))
    llm.save_pretrained(tmp_path / "llm")
    model = tiny_videollama(tokenizer=tokenizer, vision=str(tmp_path / "vision"), llm=str(tmp_path / "llm"), image_qformer=True)
    assert torch.equal(model.llm.model.embed_tokens.weight, llm.model.embed_tokens.weight)
    assert torch.equal(model.vision.model.post_layernorm.weight, vision.post_layernorm.weight)
    from videovlm.data.formats import VideoQA

    item = model.processor(VideoQA("v", tmp_path / "v.mp4", "what colour?", "red", "color"), frames=frames[:3])
    batch = model.processor.collate([item])
    assert model.image_qformer(model.vision(batch["pixel_values"])).shape == (1, 3, 8, 128)  # 8 queries per frame
    assert torch.isfinite(model(**batch).loss)
    # the saved model no longer needs the checkpoint folders
    model.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["vision"]["pretrained"] is None and saved["llm"]["hf_config"]["model_type"] == "llama"
    assert saved["image_qformer"]["hf_config"]["model_type"] == "blip_2_qformer"
    model.eval()
    with torch.no_grad():
        assert torch.equal(load_pretrained(tmp_path / "saved")(**batch).logits, model(**batch).logits)


def test_image_qformer_shapes():
    qformer = ImageQFormer(ImageQFormerConfig(num_queries=4, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64), vision_dim=48)
    assert qformer(torch.randn(2, 3, 10, 48)).shape == (2, 3, 4, 32)


def test_splice_visual_tokens_positions():
    ids = torch.tensor([[1, 9, 2, 3], [9, 4, 0, 0]])  # 9 = placeholder, 0 = padding
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    labels = torch.tensor([[-100, -100, 2, 3], [-100, 4, -100, -100]])
    text = ids.float().unsqueeze(-1)  # (B, L, 1): the embedding is the id
    visual = torch.tensor([[[10.0], [11.0], [12.0]], [[20.0], [21.0], [22.0]]])
    visual_mask = torch.tensor([[True, True, True], [True, True, False]])
    embeds, new_mask, new_labels = splice_visual_tokens(
        text_embeds=text, input_ids=ids, attention_mask=mask, labels=labels, visual_tokens=visual, visual_mask=visual_mask, placeholder_ids=[9]
    )
    assert embeds.squeeze(-1).tolist() == [[1, 10, 11, 12, 2, 3], [20, 21, 22, 4, 0, 0]]
    assert new_mask.tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 0, 1, 0, 0]]
    assert new_labels.tolist() == [[-100, -100, -100, -100, 2, 3], [-100, -100, -100, 4, -100, -100]]
    assert IGNORE_INDEX == -100
    with pytest.raises(ValueError, match="row 1 has 2 media placeholder tokens"):
        splice_visual_tokens(
            text_embeds=text, input_ids=torch.tensor([[9, 1, 1, 1], [9, 9, 1, 1]]), attention_mask=mask, labels=None,
            visual_tokens=visual, visual_mask=visual_mask, placeholder_ids=[9],
        )  # fmt: skip


def test_bert_and_bart_families_from_checkpoints(tokenizer, frames, tmp_path):
    """BertForMaskedLM / BartForConditionalGeneration folders (with their tokenizer) load
    through the same from_pretrained path as a hub id; the tokenizer comes from the folder."""
    from transformers import BartForConditionalGeneration, BertForMaskedLM

    from videovlm.data.formats import VideoCaption
    from videovlm.models import LanguageModelConfig, VideoBertModel, VideoOFAModel
    from videovlm.models.presets import tiny_bart_config, tiny_bert_config, tiny_vision

    torch.manual_seed(0)
    bert = BertForMaskedLM(tiny_bert_config(tokenizer=tokenizer))
    bart = BartForConditionalGeneration(tiny_bart_config(tokenizer=tokenizer))
    for name, lm in (("bert", bert), ("bart", bart)):
        lm.save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
    video_bert = VideoBertModel(VideoBertConfig(vision=tiny_vision(None, select="pooled"), bert=LanguageModelConfig(kind="masked", pretrained=str(tmp_path / "bert")), num_visual_words=4))
    assert video_bert.tokenizer.get_vocab() == tokenizer.get_vocab()
    assert torch.equal(video_bert.bert.bert.embeddings.word_embeddings.weight[: len(tokenizer)], bert.bert.embeddings.word_embeddings.weight)
    ofa = VideoOFAModel(VideoOFAConfig(vision=tiny_vision(None), seq2seq=LanguageModelConfig(kind="seq2seq", pretrained=str(tmp_path / "bart"))))
    assert torch.equal(ofa.seq2seq.model.encoder.layers[0].fc1.weight, bart.model.encoder.layers[0].fc1.weight)
    record = VideoCaption("v", tmp_path / "v.mp4", "a red circle moves to the left.", 2.0)
    for family in (video_bert, ofa):
        family.gradient_checkpointing_enable()
        set_trainable(family, family.DEFAULT_TRAINABLE)
        family.train()
        batch = family.processor.collate([family.processor(record, frames=frames[:2])] * 2)
        loss = family(**batch).loss
        loss.backward()
        assert torch.isfinite(loss) and family.parts()["vision"].model.embeddings.patch_embedding.weight.grad is None
        language = family.parts().get("bert") or family.parts()["seq2seq"]
        assert language.is_activation_checkpointing and language.get_input_embeddings().weight.grad is not None


def test_families_run_in_bfloat16(tokenizer, frames):
    """Under DeepSpeed bf16 every part is bf16 while the pixels arrive as float32."""
    from videovlm.data.formats import VideoCaption
    from videovlm.models.presets import tiny_videobert, tiny_videoofa

    record = VideoCaption("v", Path("v.mp4"), "a red circle moves to the left.", 2.0)
    for build in (tiny_videollama, tiny_videoofa, tiny_videobert):
        model = build(tokenizer=tokenizer).to(torch.bfloat16).eval()  # eval: VideoBERT's masking is seeded
        batch = model.processor.collate([model.processor(record, frames=frames[:2])] * 2)
        assert batch["pixel_values"].dtype == torch.float32
        loss = model(**batch).loss
        assert torch.isfinite(loss), build.__name__
        if build is tiny_videoofa:
            continue
        # The cached-feature input (float32 on disk) takes the same bf16 path as the pixels.
        with torch.no_grad():
            features = model.vision(batch["pixel_values"]).float()  # (B, T, N, D)
        cached = model(**{k: v for k, v in batch.items() if k != "pixel_values"}, frame_features=features).loss
        assert cached.dtype == loss.dtype and torch.isfinite(cached) and abs(cached.item() - loss.item()) < 0.05 * abs(loss.item()), build.__name__


def test_video_inputs_exactly_one(tokenizer, frames):
    """pixel_values, frame_features (the tower's output) or query_features (the image
    Q-Former's): exactly one, each checked, with the same video tokens from each."""
    from videovlm.data.formats import VideoCaption

    torch.manual_seed(0)
    model = tiny_videollama(tokenizer=tokenizer, image_qformer=True).eval()
    batch = model.processor.collate([model.processor(VideoCaption("v", Path("v.mp4"), "a red circle.", 2.0), frames=frames[:3])])
    pixels, mask = batch["pixel_values"], batch["frame_mask"]
    with torch.no_grad():
        features = model.vision(pixels)  # (B, T, N, D_vis)
        queries = model.image_qformer(features)  # (B, T, Q, D_q)
        direct = model.encode_video(pixels, mask)[0]
        assert torch.equal(model.encode_video(frame_mask=mask, frame_features=features)[0], direct)
        assert torch.equal(model.encode_video(frame_mask=mask, query_features=queries)[0], direct)
    with pytest.raises(ValueError, match="exactly one of pixel_values / frame_features / query_features; got pixel_values, frame_features"):
        model.encode_video(pixels, frame_features=features)
    with pytest.raises(ValueError, match="got none"):
        model(input_ids=batch["input_ids"])
    with pytest.raises(ValueError, match=r"query_features: expected \(B, T, N, D\)"):
        model.encode_video(query_features=queries[0])
    plain = tiny_videollama(tokenizer=tokenizer)
    with pytest.raises(ValueError, match="query_features: this model has no image Q-Former"):
        plain.encode_video(query_features=queries)


def test_processors_load_themselves_by_family(tokenizer, tmp_path):
    """Each processor class reads its own family's saved folder; ``load_processor`` picks the
    class by ``model_type``; another family's folder is refused by name."""
    from videovlm.models import ModelConfigError, VideoBertProcessor, VideoLlamaProcessor, load_processor
    from videovlm.models.presets import tiny_videobert

    tiny_videobert(tokenizer=tokenizer).save_pretrained(tmp_path)
    assert type(load_processor(tmp_path)) is VideoBertProcessor
    processor = VideoBertProcessor.from_pretrained(tmp_path)
    assert processor.template.qa == "{question} answer: [MASK]" and processor.max_frames == 16
    with pytest.raises(ModelConfigError, match="holds a 'videobert' model, whose processor is not a VideoLlamaProcessor"):
        VideoLlamaProcessor.from_pretrained(tmp_path)
