"""Recipe configs: YAML -> typed dataclasses, ``key=value`` overrides, validation by key path.

Everything a run needs is checked here before any model is built: unknown keys, wrong
types, missing files and disallowed ``_component_`` paths are all reported together, each
with its key path (``stages[1].data.train[0].qa_json: file not found: ...``).

Recipe layout (see ``recipes/*/*.yaml`` for complete examples)::

    output_dir: runs/tiny
    model: {_component_: videovlm.models.load_pretrained, path: runs/backbones/vision/final}
    deepspeed: {zero_stage: 2, precision: fp32}
    optimizer: {_component_: torch.optim.AdamW, weight_decay: 0.0}
    stages:
      - name: align
        steps: 100
        lr: 1.0e-3
        trainable: [video_qformer, projector]
        data:
          train: [{_component_: videovlm.train.data.VideoQADataset, qa_json: data/train/qa.json}]
          val: [{_component_: videovlm.train.data.VideoQADataset, qa_json: data/val/qa.json}]
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from videovlm.components import COMPONENT_KEY, ComponentError, find_forbidden_keys, is_component, resolve_component, spec_parameters
from videovlm.models.configs import ConfigReader, describe
from videovlm.train.instantiate import DEFAULT_ALLOWED_PACKAGES, WIDEN_HINT

Component = dict[str, Any]  # a mapping with a ``_component_`` dotted path plus keyword arguments


class ConfigError(ValueError):
    """The recipe is invalid. ``problems`` lists every ``key.path: what is wrong`` found."""

    def __init__(self, problems: Sequence[str], source: str = ""):
        self.problems = list(problems)
        head = f"invalid config {source}" if source else "invalid config"
        super().__init__(head + ":\n  " + "\n  ".join(self.problems))


def _must_exist(**kwargs: Any) -> Any:
    """Field metadata: the path must exist when the config is validated."""
    return field(metadata={"must_exist": True}, **kwargs)


@dataclass
class FeatureCacheConfig:
    """The ``feature_cache`` recipe section (a field of ``TrainConfig``; ``videovlm cache-features`` reads it too).

    Fields:
        dir: cache folder (None: ``<output_dir>/feature_cache``).
        on_miss: ``compute`` recomputes frames that are missing or stale (other frozen
            weights, an edited video) from the decoded video; ``error`` stops training
            with the video, the frames and the reason.
    """

    dir: Path | None = None
    on_miss: Literal["compute", "error"] = "compute"


@dataclass
class SaveConfig:
    """The ``save`` recipe section: how each stage's ``final/`` is written (family models).

    Fields:
        max_shard_size: None writes one ``model.safetensors``; a size such as ``5GB`` or
            ``200MB`` writes transformers' sharded layout (shards + ``model.safetensors.index.json``).
        trainable_only: a stage after the first writes only its trainable parts (LoRA: only the
            adapters) and names the previous stage's ``final/`` as the base holding the rest
            (``weights_base.json``): a frozen 7B LLM is not rewritten per stage. Loading reads
            the base first, so keep the whole output folder together.
    """

    max_shard_size: str | None = None
    trainable_only: bool = False


def cache_dir_of(config) -> Path:
    """The feature cache folder of a recipe: ``feature_cache.dir``, else ``<output_dir>/feature_cache``."""
    settings = getattr(config, "feature_cache", None) or FeatureCacheConfig()
    return settings.dir if settings.dir is not None else Path(config.output_dir) / "feature_cache"


@dataclass
class DeepSpeedConfig:
    """How DeepSpeed runs the model. The DeepSpeed JSON is generated from these fields
    (``videovlm.train.deepspeed_config``) unless ``config_file`` gives one."""

    zero_stage: int = 0  # ZeRO stage 0 (plain data parallel), 1 (optimizer states), 2 (+grads), 3 (+params)
    offload_optimizer: bool = False  # keep optimizer states (and the step) in CPU memory
    offload_param: bool = False  # ZeRO-3 only: keep parameters in CPU memory between uses
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 keeps fp32 master weights in the optimizer
    gradient_clipping: float = 1.0  # max global grad norm; 0 disables clipping
    # A DeepSpeed JSON used instead of the generated one; batch sizes and clipping missing
    # from it are filled from the recipe so the data pipeline and DeepSpeed agree.
    config_file: Path | None = _must_exist(default=None)


@dataclass
class StageData:
    """The data mix of one stage."""

    train: list[Component]  # dataset components, mixed by ``weights``
    # Per-dataset share of an epoch, as a multiple of the dataset's size (1 = every item
    # once per epoch, 0.5 = a random half, 2 = twice). Default: 1 for each.
    weights: list[float] | None = None
    val: list[Component] = field(default_factory=list)  # evaluated at stage end (loss)


@dataclass
class StageConfig:
    """One training stage. Each stage starts from the previous stage's saved weights."""

    name: str  # folder name under output_dir: letters, digits, '-', '_'
    steps: int  # optimizer steps
    lr: float  # peak learning rate
    data: StageData
    trainable: list[str] | None = None  # top-level part names to train; None: every parameter
    micro_batch_size: int = 1  # per rank, per forward
    gradient_accumulation_steps: int = 1
    warmup_steps: int = 0  # linear warmup from 0 to ``lr``
    min_lr_ratio: float = 0.0  # cosine decays from ``lr`` to ``lr * min_lr_ratio`` at ``steps``
    eval_max_batches: int | None = None  # cap on validation batches per rank (None: whole split)
    # Keyword arguments every forward of this stage gets, train and eval: a model's training
    # objective (Video-LLaMA: ``{objective: answer_readout}``, its Q-Former's LLM-free pretraining).
    forward_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """A whole recipe."""

    output_dir: Path  # stages write ``output_dir/<stage>/`` (checkpoints, final/, metrics)
    model: Component  # builds the stage-0 model; later stages load the previous ``final/``
    stages: list[StageConfig]
    seed: int = 0  # model init, data order, per-item jitter and dropout all derive from it
    resume: bool = False  # continue from the newest checkpoint in output_dir
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    optimizer: Component = field(default_factory=lambda: {COMPONENT_KEY: "torch.optim.AdamW"})  # lr comes from the stage
    gradient_checkpointing: bool = False  # calls model.gradient_checkpointing_enable()
    checkpoint_every: int = 0  # optimizer steps between checkpoints (0: only at stage end)
    keep_last: int = 2  # checkpoints kept per stage (older ones are deleted)
    elastic_checkpoints: bool = True  # ZeRO 1-2: also write optimizer_full.safetensors, to resume on another world size
    log_every: int = 1  # optimizer steps between metric lines
    num_workers: int = 0  # DataLoader worker processes per rank
    max_skip_fraction: float = 0.05  # stop when skipped / seen items passes this
    skip_check_after: int = 32  # seen items before the fraction is enforced (one bad item in the first batch is not a trend)
    tensorboard: bool = True
    progress_bar: bool = True
    # Frozen-feature cache (videovlm cache-features): "cached" trains from stored outputs of the
    # frozen vision front instead of decoding and running it every step.
    features: Literal["online", "cached"] = "online"
    feature_cache: FeatureCacheConfig = field(default_factory=FeatureCacheConfig)
    save: SaveConfig = field(default_factory=SaveConfig)


# --------------------------------------------------------------------------------------
# YAML + overrides


class RecipeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``2e-3`` / ``1E5`` as floats (YAML 1.2 and Python
    do; PyYAML's 1.1 rules need a dot, ``2.0e-3``, and would hand a learning rate over as a string)."""


RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=RecipeLoader)  # noqa: S506 (a SafeLoader subclass)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"recipe file not found: {path}"])
    try:
        data = parse_yaml(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError([f"YAML syntax error: {error}"], source=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError([f"top level must be a mapping, got {type(data).__name__}"], source=str(path))
    return data


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b=3`` / ``stages.0.steps=10`` overrides (values parsed as YAML, ``2e-3`` a float).

    A missing intermediate mapping is created (``deepspeed.zero_stage=3`` on a recipe that
    leaves ``deepspeed`` at its defaults); a misspelt key still fails, at validation, as an
    unknown key with its path. List items are addressed by index and must exist.
    """
    for override in overrides:
        key, sep, raw_value = override.partition("=")
        if not sep or not key:
            raise ConfigError([f"override {override!r}: expected key=value"])
        try:
            value = parse_yaml(raw_value)
        except yaml.YAMLError as error:
            raise ConfigError([f"override {override!r}: value is not valid YAML: {error}"]) from None
        node: Any = data
        parts = key.split(".")
        for depth, part in enumerate(parts):
            where = ".".join(parts[: depth + 1])
            last = depth == len(parts) - 1
            if isinstance(node, list):
                if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
                    raise ConfigError([f"override {override!r}: {where}: no list item {part} (the list has {len(node)})"])
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise ConfigError([f"override {override!r}: {where}: cannot index into a {type(node).__name__}"])
    return data


# --------------------------------------------------------------------------------------
# Typed conversion with key paths: the model configs' converter plus the recipe's rules


class RecipeReader(ConfigReader):
    """``videovlm.models.configs.ConfigReader`` with what recipes add: ``Path`` values (a path
    string), ``_must_exist`` fields, finite numbers, and the wording a recipe's author reads
    (the allowed keys in schema order, each wrong value with its type)."""

    def unknown_key(self, cls: type, fields: list[str]) -> str:
        return f"unknown key (allowed: {', '.join(fields)})"

    def mismatch(self, expected: type, value: Any) -> str:
        return f"expected {'an integer' if expected is int else expected.__name__}, got {describe(value)}"

    def convert(self, tp: Any, value: Any, where: str) -> Any:
        if tp is Path:
            if not isinstance(value, (str, Path)):
                self.problem(where, f"expected a path string, got {describe(value)}")
                return value
            return Path(value)
        converted = super().convert(tp, value, where)
        if tp is float and isinstance(converted, float) and not math.isfinite(converted):
            self.problem(where, f"expected a finite number, got {value!r}")
        return converted

    def check_field(self, field: dataclasses.Field, value: Any, where: str) -> None:
        if field.metadata.get("must_exist") and isinstance(value, Path) and not value.exists():
            self.problem(where, f"file not found: {value}")


# --------------------------------------------------------------------------------------
# Component checks: allowed path, known keyword arguments, files that must exist


def check_component(
    cfg: Any,
    path: str,
    problems: list[str],
    *,
    allowed_packages: Sequence[str],
    injected: Sequence[str] = (),
    spec: bool = False,
) -> None:
    """Check a component mapping against the signature of what it names.

    ``injected`` are keyword arguments the engine supplies (e.g. ``processor``, ``seed``),
    so the recipe need not give them. Arguments are checked against their annotations where
    those are plain types (``int``, ``float``, ``Path``, ``Literal``...); ``Path`` arguments
    must exist on disk. Components nested at any depth (in mappings or lists) are checked
    the same way, since ``instantiate`` builds them all, or passes them on unbuilt to a
    ``ComponentSpec`` parameter: such a spec (``spec=True``) is completed by its receiver
    (Video-LLaMA adds the tower's ``input_dim``), so it may leave required arguments out.
    """
    if not is_component(cfg):
        problems.append(f"{path}: expected a mapping with a {COMPONENT_KEY!r} key, got {cfg!r}")
        return
    try:
        target = resolve_component(cfg[COMPONENT_KEY], allowed=allowed_packages, hint=WIDEN_HINT)
    except (ComponentError, ImportError) as error:
        problems.append(f"{path}.{COMPONENT_KEY}: {error}")
        return
    specs = spec_parameters(target)
    for key, value in cfg.items():
        if key in specs and value is not None:
            check_component(value, f"{path}.{key}", problems, allowed_packages=allowed_packages, spec=True)
        elif key != COMPONENT_KEY:
            _check_nested_components(value, f"{path}.{key}", problems, allowed_packages)
    # A spec for a class built from a config dataclass (``config_class``, as the temporal
    # encoders are): its receiver calls ``from_config``, so its arguments are that dataclass's fields.
    config_class = getattr(target, "config_class", None) if spec else None
    arguments = config_class if dataclasses.is_dataclass(config_class) else target
    try:
        signature = inspect.signature(arguments)
    except (TypeError, ValueError):
        return  # no signature to check against
    params = signature.parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    given = set(cfg) - {COMPONENT_KEY}
    if not accepts_any:
        for key in sorted(given - set(params)):
            problems.append(f"{path}.{key}: unknown argument of {cfg[COMPONENT_KEY]} (allowed: {', '.join(params)})")
    for name, param in params.items():
        required = param.default is inspect.Parameter.empty and param.kind in (
            inspect.Parameter.KEYWORD_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        )
        if required and not spec and name not in given and name not in injected and name != "self":
            problems.append(f"{path}.{name}: missing required argument of {cfg[COMPONENT_KEY]}")
    try:
        hints = typing.get_type_hints(arguments.__init__ if inspect.isclass(arguments) else arguments)
    except Exception:  # unresolvable annotations: skip the type and file checks
        hints = {}
    for name in sorted((given & set(hints)) - specs):  # a spec was checked above
        _check_argument(cfg[name], hints[name], f"{path}.{name}", problems)


def _check_nested_components(value: Any, path: str, problems: list[str], allowed_packages: Sequence[str]) -> None:
    if is_component(value):
        check_component(value, path, problems, allowed_packages=allowed_packages)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_nested_components(item, f"{path}.{key}", problems, allowed_packages)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_nested_components(item, f"{path}[{index}]", problems, allowed_packages)


def _check_argument(value: Any, hint: Any, path: str, problems: list[str]) -> None:
    """A recipe argument against its annotation: the type where the annotation is made of
    plain types (anything else, e.g. a module or callable type, is left to the component),
    and existence on disk for ``Path`` arguments."""
    if is_component(value):
        return  # built at run time; checked above
    found: list[str] = []
    RecipeReader(found).convert(hint, value, path)  # an annotation it does not model passes
    problems.extend(found)
    if not found and _is_path_type(hint) and isinstance(value, (str, Path)) and not Path(value).exists():
        problems.append(f"{path}: file not found: {value}")


def _is_path_type(tp: Any) -> bool:
    if tp is Path:
        return True
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and Path in typing.get_args(tp)


# Keyword arguments the engine passes to components itself (see videovlm.train.engine).
DATASET_INJECTED = ("processor", "train", "seed")
OPTIMIZER_INJECTED = ("params", "lr")


def validate(
    data: Mapping[str, Any],
    *,
    allowed_packages: Sequence[str] = DEFAULT_ALLOWED_PACKAGES,
    source: str = "",
) -> TrainConfig:
    """Turn a raw mapping into a ``TrainConfig`` or raise ``ConfigError`` listing every problem."""
    problems = [
        f"{key}: not allowed in a recipe (videovlm never runs code shipped with a checkpoint)"
        for key in find_forbidden_keys(data)
    ]
    config = RecipeReader(problems).read(TrainConfig, dict(data))
    if config is None:
        raise ConfigError(problems, source=source)
    types_ok = not problems  # range checks below compare values, so they need the right types
    check_component(config.model, "model", problems, allowed_packages=allowed_packages)
    check_component(config.optimizer, "optimizer", problems, allowed_packages=allowed_packages, injected=OPTIMIZER_INJECTED)
    for where, component in _dataset_components(config):
        check_component(component, where, problems, allowed_packages=allowed_packages, injected=DATASET_INJECTED)
    if types_ok:
        _check_ranges(config, problems)
        _check_output_dir(config.output_dir, problems)
    if problems:
        raise ConfigError(problems, source=source)
    return config


def _dataset_components(config: TrainConfig) -> list[tuple[str, Any]]:
    """(key path, component) of every stage's datasets, as far as the types allow (a
    mistyped ``stages`` or ``data`` has been reported already)."""
    found = []
    stages = config.stages if isinstance(config.stages, list) else []
    for i, stage in enumerate(stages):
        data = getattr(stage, "data", None)
        if not isinstance(data, StageData):
            continue
        for split in ("train", "val"):
            components = getattr(data, split)
            for j, component in enumerate(components if isinstance(components, list) else []):
                found.append((f"stages[{i}].data.{split}[{j}]", component))
    return found


def _check_output_dir(output_dir: Path, problems: list[str]) -> None:
    """output_dir must be a folder or creatable as one: caught here, not after the model is built."""
    for ancestor in (output_dir, *output_dir.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                what = "is a file" if ancestor == output_dir else f"is inside {ancestor}, which is a file"
                problems.append(f"output_dir: {output_dir} {what}, not a folder")
            return


def _check_ranges(config: TrainConfig, problems: list[str]) -> None:
    ds = config.deepspeed
    if ds.zero_stage not in (0, 1, 2, 3):
        problems.append(f"deepspeed.zero_stage: must be 0, 1, 2 or 3, got {ds.zero_stage}")
    if ds.offload_param and ds.zero_stage != 3:
        problems.append("deepspeed.offload_param: parameter offload needs zero_stage 3")
    if ds.offload_optimizer and ds.zero_stage == 0:
        problems.append("deepspeed.offload_optimizer: optimizer offload needs zero_stage 1, 2 or 3")
    for name in ("checkpoint_every", "num_workers", "skip_check_after"):
        if getattr(config, name) < 0:
            problems.append(f"{name}: must be >= 0, got {getattr(config, name)}")
    for name in ("keep_last", "log_every"):
        if getattr(config, name) < 1:
            problems.append(f"{name}: must be >= 1, got {getattr(config, name)}")
    if not 0.0 <= config.max_skip_fraction <= 1.0:
        problems.append(f"max_skip_fraction: must be in [0, 1], got {config.max_skip_fraction}")
    if not config.stages:
        problems.append("stages: at least one stage is required")
    seen_names: set[str] = set()
    for i, stage in enumerate(config.stages):
        _validate_stage(stage, f"stages[{i}]", problems, seen_names)


def _validate_stage(stage: StageConfig, where: str, problems: list[str], seen_names: set[str]) -> None:
    if not stage.name or not all(c.isalnum() or c in "-_" for c in stage.name):
        problems.append(f"{where}.name: use letters, digits, '-' and '_' only, got {stage.name!r}")
    elif stage.name in seen_names:
        problems.append(f"{where}.name: duplicate stage name {stage.name!r}")
    seen_names.add(stage.name)
    for name in ("steps", "micro_batch_size", "gradient_accumulation_steps"):
        if getattr(stage, name) < 1:
            problems.append(f"{where}.{name}: must be >= 1, got {getattr(stage, name)}")
    if stage.lr <= 0:
        problems.append(f"{where}.lr: must be > 0, got {stage.lr}")
    if not 0 <= stage.warmup_steps <= stage.steps:
        problems.append(f"{where}.warmup_steps: must be in [0, steps={stage.steps}], got {stage.warmup_steps}")
    if not 0.0 <= stage.min_lr_ratio <= 1.0:
        problems.append(f"{where}.min_lr_ratio: must be in [0, 1], got {stage.min_lr_ratio}")
    if stage.trainable is not None and not stage.trainable:
        problems.append(f"{where}.trainable: an empty list trains nothing (omit the key to train everything)")
    for key in stage.forward_kwargs:
        if not (isinstance(key, str) and key.isidentifier()):
            problems.append(f"{where}.forward_kwargs: keys must be keyword names, got {key!r}")
    if not stage.data.train:
        problems.append(f"{where}.data.train: at least one dataset is required")
    if stage.data.weights is not None:
        if len(stage.data.weights) != len(stage.data.train):
            problems.append(f"{where}.data.weights: {len(stage.data.weights)} weights for {len(stage.data.train)} datasets")
        if any(w < 0 for w in stage.data.weights) or not any(w > 0 for w in stage.data.weights):
            problems.append(f"{where}.data.weights: must be >= 0 with at least one > 0, got {stage.data.weights}")


def load_config(
    path: str | Path,
    overrides: Sequence[str] = (),
    *,
    allowed_packages: Sequence[str] = DEFAULT_ALLOWED_PACKAGES,
) -> TrainConfig:
    """Read a recipe, apply overrides and validate it (nothing heavy is built)."""
    data = apply_overrides(load_yaml(path), overrides)
    return validate(data, allowed_packages=allowed_packages, source=str(path))


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """The resolved config as plain JSON-able data (paths as strings)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))
