"""Training from the webdataset shards ``videovlm extract --format wds`` writes: extract once
(on a CPU cluster), train many times without decoding a video again.

    videovlm extract data/synth/train/qa.json data/synth/shards/qa --format wds --wds-frames png
    data:
      train:
        - {_component_: videovlm.train.datasets.ShardQADataset, shards: "data/synth/shards/qa/videos-*.tar"}

A shard sample is one video: its frames (sampled and sized at extraction), its frames.json
record and the manifest rows extract carried (``rows``); every row is one training item (a
question, a caption, a conversation), so the manifest given to extract is the text source.

**Order.** A dataset's stream is an endless run of epochs. Epoch ``e`` shuffles the shard list
with a generator seeded by (seed, e) and hands it to webdataset's own ``split_by_node`` and
``split_by_worker`` (rank r reads every world-th shard from r, worker w every num_workers-th of
those from w); the items then pass a shuffle buffer seeded by (seed, e, rank, worker). Each
(rank, worker) stream is thus a pure function of (seed, world size, workers), and the
DataLoader takes one micro-batch from each worker in turn (PyTorch's in-order round robin).

**Resume.** The engine knows how many micro-batches this rank consumed (step x accumulation);
each worker skips its share, reading those items but not decoding them, and continues with the
batches an uninterrupted run would have drawn. Another world size or worker count would split
the shards differently, so ``ShardBatches`` records both and the engine refuses a change.

**Mixing.** A stage with several shard datasets draws each item from dataset i with probability
``weights[i] / sum(weights)`` (webdataset's ``RandomMix`` semantics, not the item counts per
epoch of file datasets), by a generator seeded by (seed, rank, worker).
"""

from __future__ import annotations

import abc
import glob
import io
import json
import logging
import random
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from webdataset.shardlists import expand_urls
from webdataset.utils import pytorch_worker_info

from videovlm.train.data import DataError, PadCollator, SkippedItem, encode_with_frame_mask, read_image

log = logging.getLogger(__name__)

_GLOB_CHARS = set("*?[")


def _seed(*words: int) -> int:
    state = np.random.SeedSequence(list(words)).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 32 | int(state[1])


def shard_urls(shards: str | Sequence[str]) -> list[str]:
    """The shard files of a glob (``dir/videos-*.tar``), a brace pattern
    (``dir/videos-{000000..000009}.tar``) or a list of either, sorted; ``DataError`` when
    nothing matches or a named file is missing."""
    patterns = [shards] if isinstance(shards, str) else list(shards)
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise DataError(f"shards: expected a glob, a brace pattern or a list of shard paths, got {shards!r}")
    urls: list[str] = []
    for pattern in patterns:
        if _GLOB_CHARS & set(pattern):
            found = sorted(glob.glob(pattern))
            if not found:
                raise DataError(f"shards: {pattern!r} matches no file (write shards with `videovlm extract ... --format wds`)")
            urls += found
        else:
            for url in expand_urls(pattern):
                if not Path(url).is_file():
                    raise DataError(f"shards: {url}: no such shard file")
                urls.append(url)
    return sorted(set(urls))


@dataclass(frozen=True)
class RawItem:
    """One row of one shard sample, frames still encoded (skipping it costs no decoding)."""

    url: str
    key: str
    record: dict  # the sample's frames.json record
    files: dict[str, bytes]  # frame file name -> encoded bytes
    row: dict


def _warn_and_continue(error: Exception) -> bool:
    log.warning("shard read error, rest of the shard skipped: %s: %s", type(error).__name__, error)
    return True


class ShardDataset(abc.ABC):
    """Rows of the shards ``videovlm extract --format wds`` wrote + a family processor
    (injected by the engine). Subclasses say how a row becomes a record (``parse_row``).

    Args:
        shards: a glob, a brace pattern or a list of shard paths (``shard_urls``).
        processor: the family processor (``processor(record, frames)``).
        shuffle_buffer: items held to shuffle within a stream (each holds its video's
            encoded frames: lower it for large frames).
        seed, train: as the file datasets (given by the engine); the stream is a training
            stream, so ``train`` must be true.
    """

    def __init__(self, *, shards: str | Sequence[str], processor: Any, train: bool = True, seed: int = 0, shuffle_buffer: int = 256):
        if processor is None or not callable(processor):
            raise TypeError(f"processor: {type(self).__name__} needs a model with a `processor` attribute")
        if not train:
            raise DataError(f"{type(self).__name__}: shards stream training data; evaluate on the files (a qa.json, captions.csv)")
        if shuffle_buffer < 1:
            raise DataError(f"shuffle_buffer: must be >= 1, got {shuffle_buffer}")
        self.urls = shard_urls(shards)
        self.processor = processor
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer
        self.pad_values = {"input_ids": processor.tokenizer.pad_token_id}
        first = _first_record(self.urls[0])
        self.sampler_spec = first.get("sampler")  # the extraction's sampler: what the model was trained with

    # -- what a subclass says ------------------------------------------------------------

    @abc.abstractmethod
    def parse_row(self, path: Path, where: str, row: dict) -> Any:
        """The record of one carried row (``row["video"]`` is the sample key)."""

    def keeps_row(self, row: dict) -> bool:
        """Whether a carried row is trained on (a filter, e.g. by question type)."""
        return True

    # -- the stream ----------------------------------------------------------------------

    def epoch_urls(self, seed: int, epoch: int) -> list[str]:
        urls = list(self.urls)
        random.Random(_seed(seed, epoch, 0)).shuffle(urls)
        return urls

    def raw_items(self, seed: int) -> Iterator[RawItem]:
        """This (rank, worker)'s endless stream of rows, in the order the module doc describes."""
        rank, _, worker, _ = pytorch_worker_info()
        for epoch in count():
            samples = wds.DataPipeline(
                wds.SimpleShardList(self.epoch_urls(seed, epoch)),
                wds.split_by_node,
                wds.split_by_worker,
                wds.tarfile_to_samples(handler=_warn_and_continue),
            )
            rows = (item for sample in samples for item in self._rows(sample))
            shuffled = wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=random.Random(_seed(seed, epoch, rank, worker)))
            produced = 0
            for item in shuffled(rows):
                produced += 1
                yield item
            if produced == 0:
                raise DataError(f"{type(self).__name__}: epoch {epoch}: rank {rank}, worker {worker} read no item from its shards")

    def _rows(self, sample: dict) -> Iterator[RawItem]:
        url, key = sample.get("__url__", "?"), sample.get("__key__", "?")
        try:
            record = json.loads(sample["json"])
        except (KeyError, ValueError) as error:
            log.warning("%s#%s: no readable json record (%s), sample skipped", url, key, error)
            return
        # Member "<key>.000000.png" is field "000000.png" of the sample (split at the key's end).
        files = {name: value for name, value in sample.items() if not name.startswith("__") and name != "json"}
        for row in record.get("rows") or ():
            if isinstance(row, dict) and self.keeps_row(row):
                yield RawItem(url=url, key=key, record=record, files=files, row=row)

    def encode(self, item: RawItem, position: int) -> dict[str, torch.Tensor] | SkippedItem:
        """Decode the frames, parse the row, run the processor; a bad item is a ``SkippedItem``."""
        where = f"{item.url}#{item.key}"
        try:
            record = self.parse_row(Path(item.url), f"sample {item.key}", {**item.row, "video": item.key})
            frames = torch.cat([read_image(io.BytesIO(_frame_bytes(item.files, name, where))) for name in item.record["files"]])  # (T, H, W, 3)
            valid = torch.tensor(item.record.get("valid") or [True] * len(frames), dtype=torch.bool)
        except (ValueError, KeyError, OSError) as error:
            return SkippedItem(index=position, path=where, reason=f"{type(error).__name__}: {error}")
        return encode_with_frame_mask(self.processor, record, frames, valid)


def _frame_bytes(files: dict[str, bytes], name: str, where: str) -> bytes:
    data = files.get(name)
    if data is None:
        raise KeyError(f"{where}: frame {name} missing from the sample")
    return data


def _first_record(url: str) -> dict:
    """The json record of a shard's first sample (its sampler names the training frames)."""
    try:
        with tarfile.open(url) as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".json"):
                    handle = tar.extractfile(member)
                    return json.loads(handle.read()) if handle is not None else {}
    except (OSError, tarfile.TarError, ValueError) as error:
        raise DataError(f"shards: {url}: not a readable shard: {error}") from None
    raise DataError(f"shards: {url}: holds no sample record (.json); is it a shard written by `videovlm extract --format wds`?")


class ShardQADataset(ShardDataset):
    """Shards extracted from a ``qa.json`` (MSRVTT-QA style): one item per question. ``types``
    keeps only those question types (as ``VideoQADataset``)."""

    def __init__(self, *, types: Sequence[str] | None = None, **kwargs: Any):
        """``kwargs``: those of ``ShardDataset``."""
        if types is not None and (isinstance(types, str) or not types or not all(isinstance(t, str) for t in types)):
            raise DataError(f"types: expected a non-empty list of question type names, got {types!r}")
        self.types = None if types is None else frozenset(types)
        super().__init__(**kwargs)

    def keeps_row(self, row: dict) -> bool:
        return self.types is None or row.get("type") in self.types

    def parse_row(self, path: Path, where: str, row: dict) -> Any:
        from videovlm.data.formats import qa_record

        return qa_record(path, where, row, media_root=path.parent, check_files=False)


class ShardCaptionDataset(ShardDataset):
    """Shards extracted from a WebVid ``captions.csv``: one item per caption row."""

    def parse_row(self, path: Path, where: str, row: dict) -> Any:
        from videovlm.data.formats import webvid_record

        return webvid_record(path, where, row, num_columns=len(row), media_root=path.parent, check_files=False)


class ShardInstructionDataset(ShardDataset):
    """Shards extracted from an ``instructions.json`` (LLaVA / VideoChat): one item per conversation."""

    def parse_row(self, path: Path, where: str, row: dict) -> Any:
        from videovlm.data.formats import instruction_record

        return instruction_record(path, where, row, media_root=path.parent, check_files=False)


# --------------------------------------------------------------------------------------
# The engine's side: micro-batches of one rank


def keep_batch(batch: Any) -> Any:
    """The DataLoader's collate_fn for ``ShardBatches``: its items are collated already."""
    return batch


def is_shard_stage(datasets: Sequence[Any], *, stage: str) -> bool:
    """True when a stage trains from shards only, False for files only; ``DataError`` when
    it mixes both (their orders and weights mean different things)."""
    shards = [isinstance(d, ShardDataset) for d in datasets]
    if any(shards) and not all(shards):
        raise DataError(f"stage {stage!r}: train data mixes shard datasets and file datasets; use one kind per stage")
    return bool(shards) and all(shards)


class ShardBatches(torch.utils.data.IterableDataset):
    """The collated micro-batches of one rank from its shard datasets, for optimizer steps
    ``start_step`` on (see the module doc for the order, the resume and the mixing)."""

    def __init__(
        self,
        datasets: Sequence[ShardDataset],
        weights: Sequence[float] | None,
        *,
        seed: int,
        micro_batch_size: int,
        gradient_accumulation_steps: int,
        rank: int,
        world_size: int,
        num_workers: int,
        start_step: int,
        stage: str = "",
    ):
        self.datasets = list(datasets)
        self.weights = list(weights) if weights is not None else [1.0] * len(self.datasets)
        self.seed, self.micro, self.accumulation = seed, micro_batch_size, gradient_accumulation_steps
        self.rank, self.world, self.workers = rank, world_size, max(1, num_workers)
        self.global_batch = micro_batch_size * gradient_accumulation_steps * world_size
        self.start_batches = start_step * gradient_accumulation_steps  # micro-batches this rank already consumed
        streams = self.world * self.workers
        for ds in self.datasets:
            if len(ds.urls) < streams:
                raise DataError(
                    f"stage {stage!r}: {type(ds).__name__} has {len(ds.urls)} shard file(s) for {streams} streams "
                    f"(world_size {self.world} x num_workers {self.workers}): every stream needs a shard; "
                    "extract with a smaller --tar-size or train with fewer workers"
                )
        self.pad_values: dict[str, int | float] = {k: v for ds in self.datasets for k, v in ds.pad_values.items()}

    def position(self, step: int) -> dict[str, int]:
        """Where step ``step`` reads from (trainer_state.json; a resume checks the split)."""
        return {"micro_batches_per_rank": step * self.accumulation, "world_size": self.world, "num_workers": self.workers}

    def __iter__(self) -> Iterator[Any]:
        rank, world, worker, workers = pytorch_worker_info()
        if (rank, world, workers) != (self.rank, self.world, self.workers):
            raise DataError(
                f"webdataset sees rank {rank} of {world} with {workers} workers, the engine rank {self.rank} of "
                f"{self.world} with {self.workers}: RANK / WORLD_SIZE in the environment disagree with the launcher"
            )
        streams = [ds.raw_items(self.seed) for ds in self.datasets]
        chooser = random.Random(_seed(self.seed, rank, worker, 1))
        choices = range(len(streams))

        def pick() -> int:
            return chooser.choices(choices, weights=self.weights)[0] if len(streams) > 1 else 0

        position = len(range(worker, self.start_batches, workers)) * self.micro  # this worker's share, in items
        for _ in range(position):
            next(streams[pick()])  # read, not decoded
        collate = PadCollator(self.pad_values)
        while True:
            items = []
            for _ in range(self.micro):
                which = pick()
                items.append(self.datasets[which].encode(next(streams[which]), position))
                position += 1
            yield collate(items)
