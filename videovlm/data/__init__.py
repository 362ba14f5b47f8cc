"""Data: the synthetic default data set (``videovlm.data.synthetic``) and readers for the
community's formats (``videovlm.data.formats``), re-exported here."""

from __future__ import annotations

from videovlm.data.formats import (
    Conversation,
    DataFormatError,
    ImageCaption,
    MissingMediaError,
    Turn,
    VideoCaption,
    VideoQA,
    read_annotations_jsonl,
    read_image_captions_json,
    read_instructions_json,
    read_qa_json,
    read_webvid_csv,
)

__all__ = [
    "Conversation",
    "DataFormatError",
    "ImageCaption",
    "MissingMediaError",
    "Turn",
    "VideoCaption",
    "VideoQA",
    "read_annotations_jsonl",
    "read_image_captions_json",
    "read_instructions_json",
    "read_qa_json",
    "read_webvid_csv",
]
