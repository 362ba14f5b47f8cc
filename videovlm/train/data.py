"""Training data: media datasets, a resumable step-indexed batch sampler, padded collation.

Exactness: every random choice is a pure function of (seed, epoch, index) — the epoch's
order comes from a generator seeded by (seed, epoch), each item's frame jitter from one
seeded by (seed, epoch, index) — so the data position is just the optimizer step, resume
needs nothing but the step, and results do not depend on the number of DataLoader workers.

A global batch of step ``s`` is the same set of items for any world size and gradient
accumulation that multiply to the same global batch, so one process with accumulation 2
sees what two processes see.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from videovlm.video.types import VideoDecodeError

ItemKey = tuple[int, int]  # (epoch, index)


class DataError(ValueError):
    """The data of a stage cannot feed the requested batches (too small, inconsistent)."""


class TooManySkippedError(RuntimeError):
    """More items were skipped (corrupt or missing media) than ``max_skip_fraction`` allows."""


@dataclass(frozen=True)
class SkippedItem:
    """What a dataset returns instead of an item whose media cannot be read."""

    index: int
    path: str
    reason: str


def _seeded_generator(*words: int) -> torch.Generator:
    state = np.random.SeedSequence(list(words)).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A generator seeded from (seed, epoch, index) alone: the same item in the same epoch
    gets the same jitter whichever worker, rank or resumed run decodes it."""
    return _seeded_generator(seed, epoch, index, 0)


# --------------------------------------------------------------------------------------
# Media datasets


class MediaTextDataset(Dataset):
    """Records with one video or image each -> processed model inputs.

    ``records`` are the typed records of ``videovlm.data.formats``; ``media_path(record)``
    says where the media is and whether it is a video. Videos are opened with
    ``videovlm.video.open_video`` and sampled with ``sampler`` (a spec such as
    ``"segment:8"``); at train time the sampler gets a per-item generator (jitter), at eval
    time none (centres). ``encode(record, frames, valid)`` turns the record and the uint8
    frames ``(T, H, W, 3)`` into a dict of tensors (the family processor does the work).
    A missing or undecodable file gives a ``SkippedItem`` instead of an exception.
    """

    def __init__(
        self,
        *,
        records: Sequence[Any],
        media_path: Callable[[Any], tuple[Path, bool]],
        encode: Callable[[Any, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]],
        sampler: str = "uniform:8",
        train: bool = True,
        seed: int = 0,
        pad_values: Mapping[str, int | float] | None = None,
        decode_size: Sequence[int] | int | None = None,
    ):
        from videovlm.video.samplers import parse_sampler

        self.records = list(records)
        self.media_path = media_path
        self.encode = encode
        self.sampler_spec = sampler
        self.sampler = parse_sampler(sampler)
        self.train = train
        self.seed = seed
        self.pad_values = dict(pad_values or {})
        # (height, width), or the short side (aspect kept), to decode at: the decoder scales,
        # cheaper than decoding full size and resizing after.
        self.decode_size = decode_size if decode_size is None or isinstance(decode_size, int) else tuple(decode_size)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: ItemKey | int) -> dict[str, torch.Tensor] | SkippedItem:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        record = self.records[index]
        path, is_video = self.media_path(record)
        try:
            if is_video:
                frames, valid = self._read_video(path, epoch, index)
            else:
                frames, valid = read_image(path), torch.ones(1, dtype=torch.bool)
        except (VideoDecodeError, OSError, ValueError) as error:
            return SkippedItem(index=index, path=str(path), reason=f"{type(error).__name__}: {error}")
        return self.encode(record, frames, valid)

    def _read_video(self, path: Path, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from videovlm.video import open_video

        if not path.is_file():
            raise FileNotFoundError(f"video not found: {path}")
        generator = item_generator(self.seed, epoch, index) if self.train else None
        with open_video(path, resize=self.decode_size, num_threads=decoder_threads()) as reader:
            sample = self.sampler(reader.metadata, generator)
            batch = reader.get_frames(list(sample.indices))
        return batch.frames, torch.tensor(sample.valid, dtype=torch.bool)  # (T, H, W, 3), (T,)


def decoder_threads() -> int:
    """Decoder threads for a video read here: in a DataLoader worker, the cores shared out
    among the workers (FFmpeg's default, a thread per core in every worker, oversubscribes
    them; benchmarks/dataloader.py); else 0, FFmpeg's choice."""
    info = torch.utils.data.get_worker_info()
    if info is None:
        return 0
    return max(1, len(os.sched_getaffinity(0)) // info.num_workers)


def read_image(path: Path | BinaryIO) -> torch.Tensor:
    """An image file (a path or an open binary file) as uint8 RGB ``(1, H, W, 3)``."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"))
    return torch.from_numpy(rgb.copy()).unsqueeze(0)  # (1, H, W, 3)


def encode_with_frame_mask(processor: Any, record: Any, frames: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
    """``processor(record, frames)``, plus ``frame_mask`` (False where the sampler padded a
    short video) when the item has video pixels ``(T, C, H, W)``."""
    item = processor(record, frames)
    if "pixel_values" in item and item["pixel_values"].ndim == 4:
        item["frame_mask"] = valid  # (T,)
    return item


class MixedDataset(Dataset):
    """Several datasets behind one flat index (the data mix of a stage)."""

    def __init__(self, datasets: Sequence[Dataset]):
        if not datasets:
            raise DataError("a stage needs at least one dataset")
        self.datasets = list(datasets)
        self.offsets = np.cumsum([0] + [len(d) for d in self.datasets])  # type: ignore[arg-type]
        pads = [getattr(d, "pad_values", {}) for d in self.datasets]
        for other in pads[1:]:
            for key in set(pads[0]) & set(other):
                if pads[0][key] != other[key]:
                    raise DataError(f"datasets of one stage pad {key!r} differently: {pads[0][key]} vs {other[key]}")
        self.pad_values: dict[str, int | float] = {k: v for p in pads for k, v in p.items()}

    @property
    def sizes(self) -> list[int]:
        return [len(d) for d in self.datasets]  # type: ignore[arg-type]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, key: ItemKey) -> Any:
        epoch, flat = key
        which = int(np.searchsorted(self.offsets, flat, side="right") - 1)
        return self.datasets[which][(epoch, flat - int(self.offsets[which]))]


# --------------------------------------------------------------------------------------
# Sampling and collation


def epoch_order(sizes: Sequence[int], weights: Sequence[float], *, seed: int, epoch: int) -> torch.Tensor:
    """Flat indices of one epoch: dataset ``i`` contributes ``round(w_i * size_i)`` items
    (a seeded random subset, or whole repeats for w > 1), then everything is shuffled."""
    generator = _seeded_generator(seed, epoch, 0, 1)  # its own stream, apart from the items'
    parts, offset = [], 0
    for size, weight in zip(sizes, weights):
        count = int(round(weight * size))
        if count and size:
            repeats = -(-count // size)
            local = torch.cat([torch.randperm(size, generator=generator) for _ in range(repeats)])[:count]
            parts.append(local + offset)
        offset += size
    if not parts:
        return torch.zeros(0, dtype=torch.long)
    order = torch.cat(parts)
    return order[torch.randperm(len(order), generator=generator)]


class StepBatchSampler(Sampler[list[ItemKey]]):
    """Micro-batches of (epoch, index) keys for optimizer steps ``start_step..total_steps-1``.

    Step ``s`` takes the global batch ``order[s*G : (s+1)*G]`` of its epoch (G = micro x
    accumulation x world); micro-step ``m`` on rank ``r`` takes slice ``m*world + r`` of it.
    Epochs end with the last full global batch (the remainder is dropped, as usual).
    """

    def __init__(
        self,
        *,
        sizes: Sequence[int],
        weights: Sequence[float] | None,
        seed: int,
        micro_batch_size: int,
        gradient_accumulation_steps: int,
        rank: int,
        world_size: int,
        start_step: int,
        total_steps: int,
        stage: str = "",
    ):
        self.sizes = list(sizes)
        self.weights = list(weights) if weights is not None else [1.0] * len(self.sizes)
        self.seed = seed
        self.micro = micro_batch_size
        self.accumulation = gradient_accumulation_steps
        self.rank = rank
        self.world = world_size
        self.start_step = start_step
        self.total_steps = total_steps
        self.global_batch = micro_batch_size * gradient_accumulation_steps * world_size
        epoch_size = sum(int(round(w * s)) for w, s in zip(self.weights, self.sizes))
        self.steps_per_epoch = epoch_size // self.global_batch
        if self.steps_per_epoch == 0:
            raise DataError(
                f"stage {stage!r}: an epoch has {epoch_size} items, fewer than one global batch of "
                f"{self.global_batch} (micro_batch_size x gradient_accumulation_steps x world_size)"
            )
        self._order_cache: tuple[int, torch.Tensor] | None = None

    def position(self, step: int) -> dict[str, int]:
        """Where step ``step`` reads from (saved in trainer_state.json for humans)."""
        return {"epoch": step // self.steps_per_epoch, "batch_in_epoch": step % self.steps_per_epoch}

    def _order(self, epoch: int) -> torch.Tensor:
        if self._order_cache is None or self._order_cache[0] != epoch:
            self._order_cache = (epoch, epoch_order(self.sizes, self.weights, seed=self.seed, epoch=epoch))
        return self._order_cache[1]

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step) * self.accumulation

    def __iter__(self) -> Iterator[list[ItemKey]]:
        for step in range(self.start_step, self.total_steps):
            epoch, in_epoch = divmod(step, self.steps_per_epoch)
            order = self._order(epoch)
            base = in_epoch * self.global_batch
            for micro_step in range(self.accumulation):
                start = base + (micro_step * self.world + self.rank) * self.micro
                yield [(epoch, int(i)) for i in order[start : start + self.micro]]


class ShardedEvalSampler(Sampler[list[ItemKey]]):
    """Evaluation: the split in order, rank ``r`` taking every ``world``-th batch."""

    def __init__(self, *, size: int, batch_size: int, rank: int, world_size: int, max_batches: int | None = None):
        batches = [list(range(i, min(i + batch_size, size))) for i in range(0, size, batch_size)]
        mine = batches[rank::world_size]
        self.batches = mine[:max_batches] if max_batches is not None else mine

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[ItemKey]]:
        for batch in self.batches:
            yield [(0, i) for i in batch]


@dataclass
class CollatedBatch:
    inputs: dict[str, Any]  # model keyword arguments, padded to the batch
    skipped: list[SkippedItem]
    num_items: int  # items in ``inputs`` (after dropping skipped ones)


class PadCollator:
    """Drop skipped items, stack the rest, padding ragged tensors along their first dim.

    ``pixel_values`` ``(T, C, H, W)`` per item become ``(B, T_max, C, H, W)`` with a
    ``frame_mask (B, T_max)`` (True = real frame); token sequences are padded with
    ``pad_values[key]`` (e.g. the pad id for ``input_ids``, -100 for ``labels``, 0 otherwise).
    """

    def __init__(self, pad_values: Mapping[str, int | float] | None = None):
        self.pad_values = {"labels": -100, **dict(pad_values or {})}

    def __call__(self, items: Sequence[Any]) -> CollatedBatch:
        skipped = [item for item in items if isinstance(item, SkippedItem)]
        good = [item for item in items if not isinstance(item, SkippedItem)]
        if not good:
            return CollatedBatch(inputs={}, skipped=skipped, num_items=0)
        keys = list(good[0])
        for item in good[1:]:
            if set(item) != set(keys):  # the order of a dict's keys is not part of an item
                raise DataError(f"items of one batch have different keys: {sorted(keys)} vs {sorted(item)}")
        if "pixel_values" in keys and "frame_mask" not in keys and good[0]["pixel_values"].ndim == 4:  # (T, C, H, W) frames
            for item in good:
                item["frame_mask"] = torch.ones(item["pixel_values"].shape[0], dtype=torch.bool)
            keys.append("frame_mask")
        inputs = {key: self._stack(key, [item[key] for item in good]) for key in keys}
        return CollatedBatch(inputs=inputs, skipped=skipped, num_items=len(good))

    def _stack(self, key: str, values: list[Any]) -> Any:
        if not isinstance(values[0], torch.Tensor):
            return values
        if all(v.shape == values[0].shape for v in values):
            return torch.stack(values)
        longest = max(v.shape[0] for v in values)
        out = values[0].new_full((len(values), longest, *values[0].shape[1:]), self.pad_values.get(key, 0))
        for row, value in enumerate(values):
            out[row, : value.shape[0]] = value
        return out
