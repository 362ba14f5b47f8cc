"""Building one training stage: its model and its datasets, and the stage hand-off.

Stage 0 builds the recipe's ``model`` component; every later stage loads the previous
stage's ``final/`` through the model class that stage recorded in its marker file
(``final/training_stage.json``) and that class's ``from_pretrained``. Dataset components are
instantiated with the engine's arguments (``processor``, ``train``, ``seed``) that each one
accepts. Used by the engine, the run plan, the feature-cache CLI and the tools.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from videovlm.components import ComponentError, resolve_component
from videovlm.train.config import TrainConfig
from videovlm.train.instantiate import instantiate

STAGE_MARKER = "training_stage.json"  # written into final/ last: the stage is complete


class TrainingError(RuntimeError):
    """The run cannot continue (existing outputs without resume, a model without the API...)."""


def class_path(obj: Any) -> str:
    cls = obj if inspect.isclass(obj) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def build_stage_model(config: TrainConfig, previous_final: Path | None, *, allowed_packages: Sequence[str]) -> nn.Module:
    """Stage 0: the recipe's model component. Later: ``Class.from_pretrained(previous final)``."""
    if previous_final is None:
        model = instantiate(config.model, allowed_packages=allowed_packages)
    else:
        model = stage_model_class(previous_final, allowed_packages=allowed_packages).from_pretrained(previous_final)
    if not isinstance(model, nn.Module):
        raise TrainingError(f"model: {config.model.get('_component_')} returned {type(model).__name__}, not a torch nn.Module")
    for method in ("save_pretrained", "from_pretrained"):
        if not callable(getattr(model, method, None)):
            raise TrainingError(f"model: {class_path(model)} has no {method}(); stages hand weights on through save_pretrained/from_pretrained")
    return model


def stage_model_class(final_dir: Path, *, allowed_packages: Sequence[str]) -> type[nn.Module]:
    """The model class a finished stage recorded in ``final/training_stage.json``. The file
    sits in the run folder, so it is checked like a recipe: an allowed ``nn.Module`` class."""
    marker_path = final_dir / STAGE_MARKER
    try:
        marker = json.loads(marker_path.read_text())
        path = marker["model_class"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise TrainingError(f"{marker_path}: not a readable stage marker with a 'model_class' ({type(error).__name__}: {error})") from None
    try:
        cls = resolve_component(path, allowed=allowed_packages, where=str(marker_path))
    except ComponentError as error:
        raise TrainingError(str(error)) from None
    if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
        raise TrainingError(f"{marker_path}: model_class {path!r} is not a torch nn.Module class")
    return cls


def build_datasets(components: Sequence[dict], *, processor: Any, train: bool, seed: int, allowed_packages: Sequence[str]) -> list[Any]:
    """Instantiate dataset components, passing the engine's arguments each one accepts."""
    datasets = []
    for component in components:
        target = resolve_component(component["_component_"], allowed=allowed_packages)
        params = inspect.signature(target).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())  # forwards **kwargs to its base
        offered = {"processor": processor, "train": train, "seed": seed}
        extra = {k: v for k, v in offered.items() if (takes_any or k in params) and k not in component}
        datasets.append(instantiate(component, allowed_packages=allowed_packages, **extra))
    return datasets
