"""Object captions derived from the synthetic ground truth: one conversation per object, naming
only that object, reproducible, and served by the recipe dataset component."""

from __future__ import annotations

from videovlm.data.formats import read_annotations_jsonl
from videovlm.data.synthetic.object_captions import object_caption_conversations
from videovlm.data.synthetic.vocabulary import COLOR_NAMES, SHAPES


def test_one_caption_per_object_naming_only_it(synth_dir):
    path = synth_dir / "train" / "annotations.jsonl"
    annotations = read_annotations_jsonl(path, check_files=False)
    conversations = object_caption_conversations(path)
    assert len(conversations) == sum(len(a.objects) for a in annotations)
    assert conversations == object_caption_conversations(path)  # reproducible
    assert conversations != object_caption_conversations(path, seed=1)  # the seed draws other paraphrases
    pairs = iter(conversations)
    for annotation in annotations:
        for obj in annotation.objects:
            conversation = next(pairs)
            human, gpt = conversation.turns
            assert conversation.id == f"{annotation.video_id}/{obj.shape}" and conversation.media == path.parent / annotation.video
            assert human.text == f"<video> describe the {obj.shape}." and human.role == "human" and gpt.role == "gpt"
            words = gpt.text.replace(".", " ").replace(",", " ").split()
            assert obj.shape in words and obj.color in words
            assert not any(shape in words for shape in SHAPES if shape != obj.shape)  # no other object
            assert not any(colour in words for colour in COLOR_NAMES if colour not in (obj.color, obj.color_after))


def test_object_caption_dataset_encodes_them_with_the_family_processor(synth_dir, tmp_path):
    import torch

    from videovlm.models import train_tokenizer
    from videovlm.models.presets import tiny_videollama
    from videovlm.train.datasets import ObjectCaptionDataset

    path = synth_dir / "train" / "annotations.jsonl"
    texts = [turn.text for c in object_caption_conversations(path) for turn in c.turns]
    torch.manual_seed(0)
    model = tiny_videollama(tokenizer=train_tokenizer(texts, vocab_size=300))
    dataset = ObjectCaptionDataset(path=path, processor=model.processor, sampler="uniform:4", train=False)
    item = dataset[(0, 0)]
    assert item["pixel_values"].shape[:2] == (4, 3) and item["frame_mask"].all()
    answer = model.processor.decode(item["input_ids"][item["labels"] != -100][None])[0]
    assert answer == dataset.records[0].turns[1].text
