"""Text pretraining of the tiny language backbones (``recipes/backbones/{llm,bert,bart}.yaml``):
causal (Llama), masked (BERT) and seq2seq (BART) objectives on the synthetic corpus, and the
text-grounded chat corpus that makes the tiny Llama a chat model (the Vicuna analogue)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import transformers
from torch import nn
from torch.utils.data import Dataset
from transformers import AutoConfig, AutoTokenizer

from videovlm.models.base import IGNORE_INDEX
from videovlm.train.data import item_generator

Objective = Literal["causal", "masked", "seq2seq"]


def corpus_tokenizer(corpus: Path, *, vocab_size: int = 2000):
    """The shared tokenizer: trained on every text of the synthetic split folder ``corpus``."""
    from videovlm.data.synthetic import corpus_texts
    from videovlm.models import train_tokenizer

    return train_tokenizer(corpus_texts(corpus), vocab_size=vocab_size)


class TextProcessor:
    """Text -> training item for one objective.

    ``causal``: ``<s> text </s>``, labels = input ids (the LM shifts them).
    ``masked``: ``[CLS] text [SEP]``, 15% of the words' tokens selected (80% ``[MASK]``, 10%
    random, 10% kept), labels only there (BERT).
    ``seq2seq``: text infilling (BART): one span of ~30% of the tokens becomes one ``[MASK]``
    in the input; the target is the whole text.
    """

    def __init__(self, tokenizer, *, objective: Objective, max_length: int = 64, mask_fraction: float = 0.15, span_fraction: float = 0.3):
        self.tokenizer = tokenizer
        self.objective = objective
        self.max_length = max_length
        self.mask_fraction = mask_fraction
        self.span_fraction = span_fraction

    def __call__(self, text: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
        tok = self.tokenizer
        words = tok(text, add_special_tokens=False)["input_ids"][: self.max_length - 2]
        if not words:
            raise ValueError(f"text {text!r}: no tokens")
        if self.objective == "causal":
            ids = torch.tensor([tok.bos_token_id, *words, tok.eos_token_id])
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
        if self.objective == "masked":
            return self._masked(torch.tensor([tok.cls_token_id, *words, tok.sep_token_id]), generator)
        return self._infill(torch.tensor(words), generator)

    def _masked(self, ids: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        inner = torch.arange(1, len(ids) - 1)  # never the [CLS] / [SEP] ends
        count = max(1, int(round(self.mask_fraction * len(inner))))
        chosen = inner[torch.randperm(len(inner), generator=generator)[:count]]
        labels = torch.full_like(ids, IGNORE_INDEX)
        labels[chosen] = ids[chosen]
        masked = ids.clone()
        roll = torch.rand(len(chosen), generator=generator)
        random_ids = torch.randint(len(self.tokenizer.all_special_ids), len(self.tokenizer), (len(chosen),), generator=generator)
        masked[chosen] = torch.where(roll < 0.8, self.tokenizer.mask_token_id, torch.where(roll < 0.9, random_ids, ids[chosen]))
        return {"input_ids": masked, "attention_mask": torch.ones_like(masked), "labels": labels}

    def _infill(self, words: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        tok = self.tokenizer
        span = max(1, int(round(self.span_fraction * len(words))))
        start = int(torch.randint(0, len(words) - span + 1, (1,), generator=generator))
        source = torch.cat([words[:start], torch.tensor([tok.mask_token_id]), words[start + span :]])
        ids = torch.cat([torch.tensor([tok.bos_token_id]), source, torch.tensor([tok.eos_token_id])])
        labels = torch.cat([words, torch.tensor([tok.eos_token_id])])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


class TextBackbone(nn.Module):
    """A Hugging Face LM + its tokenizer; ``save_pretrained`` writes a plain HF checkpoint."""

    def __init__(self, model: transformers.PreTrainedModel, tokenizer, *, objective: Objective):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.objective = objective
        # 96 tokens: a grounded chat line (caption + question + answer, ChatCorpusDataset) fits whole.
        self.processor = TextProcessor(tokenizer, objective=objective, max_length=96)

    def forward(self, **batch: torch.Tensor):
        return self.model(**batch)

    def gradient_checkpointing_enable(self) -> None:
        self.model.gradient_checkpointing_enable()

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = Path(directory)
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> TextBackbone:
        config = AutoConfig.from_pretrained(directory)
        architecture = (config.architectures or [""])[0]
        objective = _OBJECTIVE_OF.get(architecture)
        if objective is None:
            raise ValueError(f"{directory}/config.json: architecture {architecture!r} is not one of {sorted(_OBJECTIVE_OF)}")
        model = getattr(transformers, architecture).from_pretrained(str(directory))
        return cls(model, AutoTokenizer.from_pretrained(str(directory)), objective=objective)


_OBJECTIVE_OF: dict[str, Objective] = {"LlamaForCausalLM": "causal", "BertForMaskedLM": "masked", "BartForConditionalGeneration": "seq2seq"}


def tiny_text_backbone(*, corpus: Path, objective: Objective, vocab_size: int = 2000) -> TextBackbone:
    """A fresh tiny LM of the video presets' size (Llama / BERT / BART) with the corpus tokenizer."""
    return build_text_backbone(corpus_tokenizer(corpus, vocab_size=vocab_size), objective=objective)


def pretrained_text_backbone(*, directory: Path) -> TextBackbone:
    """A text backbone a recipe continues training: the plain HF checkpoint + tokenizer in
    ``directory`` (what another backbone recipe wrote), e.g. ``llm_copy.yaml`` after ``llm.yaml``."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory}: no config.json; expected a text backbone folder (a backbone recipe's final/)")
    return TextBackbone.from_pretrained(directory)


def build_text_backbone(tokenizer, *, objective: Objective) -> TextBackbone:
    from videovlm.models import presets

    builders = {
        "causal": (transformers.LlamaForCausalLM, presets.tiny_llama_config),
        "masked": (transformers.BertForMaskedLM, presets.tiny_bert_config),
        "seq2seq": (transformers.BartForConditionalGeneration, presets.tiny_bart_config),
    }
    if objective not in builders:
        raise ValueError(f"objective: expected one of {sorted(builders)}, got {objective!r}")
    model_class, make_config = builders[objective]
    return TextBackbone(model_class(make_config(tokenizer=tokenizer)), tokenizer, objective=objective)


class TextCorpusDataset(Dataset):
    """The distinct texts of a synthetic split folder, one item each, through the model's
    ``TextProcessor``; masking/infilling noise is seeded by (seed, epoch, index)."""

    def __init__(self, *, split_dir: Path, processor: TextProcessor, train: bool = True, seed: int = 0, limit: int | None = None):
        texts = self.read_texts(split_dir, processor)
        self.texts = texts if limit is None else texts[:limit]
        self.processor = processor
        self.seed = seed
        self.train = train
        self.pad_values = {"input_ids": processor.tokenizer.pad_token_id}

    def read_texts(self, split_dir: Path, processor: TextProcessor) -> list[str]:
        from videovlm.data.synthetic import corpus_texts

        return list(dict.fromkeys(t for t in corpus_texts(split_dir) if t.strip()))

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key
        # Validation uses epoch 0's noise every time, so its loss is comparable across runs.
        return self.processor(self.texts[index], item_generator(self.seed, epoch if self.train else 0, index))


def grounded_chat_texts(split_dir: str | Path) -> list[str]:
    """One single-turn conversation per video question of a synthetic split, in the Video-LLaMA
    chat template with the video's caption where the video will be::

        ###Human: {caption} {question}###Assistant: {answer}

    (``TextProcessor`` adds ``<s>`` and ``</s>``, so the ids match ``VideoLlamaProcessor``'s
    rendering of the same turn with the caption in place of ``<video>``.)"""
    from videovlm.data.formats import read_qa_json, read_webvid_csv
    from videovlm.models.tokenizer import ASSISTANT_MARKER, HUMAN_MARKER

    split_dir = Path(split_dir)
    captions = {r.video_id: r.caption for r in read_webvid_csv(split_dir / "captions.csv", check_files=False)}
    texts = []
    for item in read_qa_json(split_dir / "qa.json", check_files=False):
        if item.video_id not in captions:
            raise ValueError(f"{split_dir / 'qa.json'}: video {item.video_id!r} has no caption in captions.csv")
        texts.append(f"{HUMAN_MARKER} {captions[item.video_id]} {item.question}{ASSISTANT_MARKER} {item.answer}")
    return texts


class ChatCorpusDataset(TextCorpusDataset):
    """Text-grounded conversations (``grounded_chat_texts``) for the causal LM: the tiny
    analogue of the chat tuning that makes Vicuna, Video-LLaMA's LLM, a chat model. A frozen
    LLM that has never seen the ``###Human:`` / ``###Assistant:`` template, nor answered a
    question about what precedes it, cannot learn either from a few soft video tokens."""

    def read_texts(self, split_dir: Path, processor: TextProcessor) -> list[str]:
        if processor.objective != "causal":
            raise ValueError(f"ChatCorpusDataset: needs a causal LM (objective 'causal'), got {processor.objective!r}")
        return grounded_chat_texts(split_dir)




# First entry of every scene seed of the fresh chat corpus (the data set seeds its videos with
# [seed, split, index]; the tower's frames use another tag): no split's scene is ever drawn.
CHAT_STREAM = 0x63686174  # "chat"


class SceneChatDataset(Dataset):
    """Text-grounded chat about freshly drawn synthetic scenes, never repeated: item ``(epoch,
    index)`` samples scene ``[CHAT_STREAM, seed, epoch, index]`` (no video is rendered), its
    caption and its questions exactly as the data set generator does, and renders a
    conversation in the Video-LLaMA template with the caption where ``<video>`` would be::

        <s>###Human: {caption} {question 1}###Assistant: {answer 1}</s>###Human: {question 2}...

    Every question of the scene is asked, in random order, and with probability
    ``describe_share`` a describe request (answered by the caption) is one of the turns: each
    item trains many answers, which is what teaches a from-scratch LLM to read its context
    (one answer per item left the tiny Llama at chance on colour and direction after 1000
    steps). Encoded by the processor's own template encoding (``encode_chat``), labels on the
    answers only: the tiny LLM learns to answer from what precedes the question, which the
    frozen LLM of Video-LLaMA must then do from video tokens.

    ``min_objects`` / ``max_objects`` bound the objects per scene: with one object, "the
    colour" is the only colour in the caption, so only multi-object scenes teach the LLM to
    find the attribute of the *named* object (the binding that the answers need)."""

    def __init__(
        self,
        *,
        processor: TextProcessor,
        length: int = 10_000_000,
        seed: int = 0,
        describe_share: float = 0.3,
        min_objects: int = 1,
        max_objects: int = 3,
        max_length: int = 256,
    ):
        from videovlm.data.synthetic.scene import SceneConfig
        from videovlm.models.videollama import ChatTemplateConfig

        if processor.objective != "causal":
            raise ValueError(f"SceneChatDataset: needs a causal LM (objective 'causal'), got {processor.objective!r}")
        self.processor = processor
        self.template = ChatTemplateConfig()
        self.length = length
        self.seed = seed
        self.describe_share = describe_share
        self.max_length = max_length  # a whole conversation (every question of a 3-object scene) fits
        self.scene = SceneConfig(min_objects=min_objects, max_objects=max_objects)  # checks the range now
        if not 0.0 <= describe_share <= 1.0:
            raise ValueError(f"SceneChatDataset: describe_share must be in [0, 1], got {describe_share}")
        self.pad_values = {"input_ids": processor.tokenizer.pad_token_id}

    def __len__(self) -> int:
        return self.length

    def turns(self, epoch: int, index: int) -> list:
        """The conversation of item (epoch, index), caption in the first human turn."""
        import numpy as np

        from videovlm.data.synthetic.captions import DESCRIBE_PROMPTS, make_caption
        from videovlm.data.synthetic.questions import sample_questions
        from videovlm.data.synthetic.scene import sample_scene
        from videovlm.models.processing import Turn

        rng = np.random.default_rng([CHAT_STREAM, self.seed, epoch, index])
        ann = sample_scene(rng, video_id="chat", size=112, num_frames=16, fps=8.0, config=self.scene)
        questions = sample_questions(rng, ann)
        caption = make_caption(rng, ann)
        pairs = [(q.question, q.answer) for q in (questions[i] for i in rng.permutation(len(questions)))]
        if rng.random() < self.describe_share:
            pairs.insert(int(rng.integers(len(pairs) + 1)), (DESCRIBE_PROMPTS[int(rng.integers(len(DESCRIBE_PROMPTS)))], caption))
        turns = []
        for number, (human, gpt) in enumerate(pairs):
            turns += [Turn("human", f"{caption} {human}" if number == 0 else human), Turn("gpt", gpt)]
        return turns

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        from videovlm.models.videollama import encode_chat

        epoch, index = key
        ids, labels = encode_chat(self.processor.tokenizer, self.template, self.turns(epoch, index), where=f"chat item {key}")
        ids, labels = ids[: self.max_length], labels[: self.max_length]
        ids_t = torch.tensor(ids)
        return {"input_ids": ids_t, "attention_mask": torch.ones_like(ids_t), "labels": torch.tensor(labels)}
