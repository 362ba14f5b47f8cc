"""``_component_`` paths reach only classes and functions *defined* in the allowed packages.

The payloads here are other than the ones the issue reported (``videovlm.train.cli.os.system``):
every imported module, every re-exported outside object and every dunder reachable from an
allowed module is tried, through every slot of a recipe and through ``cache-features``.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys

import pytest
import yaml

import videovlm
from tests.conftest import REPO_ROOT
from tests.train.conftest import recipe_dict
from videovlm.cli import main
from videovlm.components import ComponentError, module_is_allowed, resolve_component
from videovlm.train.config import ConfigError, validate
from videovlm.train.instantiate import DEFAULT_ALLOWED_PACKAGES, instantiate

ALLOWED = DEFAULT_ALLOWED_PACKAGES


def allowed_modules() -> list[str]:
    """Every importable module of the default allow-list inside videovlm."""
    names = []
    for info in pkgutil.walk_packages(videovlm.__path__, prefix="videovlm."):
        if module_is_allowed(info.name, ALLOWED):
            names.append(info.name)
    return names


def foreign_attributes(module_name: str) -> list[str]:
    """Names in a module that are modules or objects defined outside the allow-list."""
    module = importlib.import_module(module_name)
    found = []
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if inspect.ismodule(value):
            found.append(name)
        elif (inspect.isclass(value) or inspect.isfunction(value) or inspect.isbuiltin(value)) and not module_is_allowed(
            getattr(value, "__module__", None), ALLOWED
        ):
            found.append(name)
    return found


def test_every_imported_module_and_reexport_in_allowed_packages_is_refused():
    tried = 0
    for module_name in allowed_modules():
        for name in foreign_attributes(module_name):
            path = f"{module_name}.{name}"
            with pytest.raises(ComponentError):
                resolve_component(path, allowed=ALLOWED)
            # ... and whatever hangs off it (os.system, torch.load, subprocess.run, Path.write_text)
            value = getattr(importlib.import_module(module_name), name)
            for attribute in ("system", "load", "save", "run", "write_text", "from_pretrained", "popen"):
                if hasattr(value, attribute):
                    with pytest.raises(ComponentError):
                        resolve_component(f"{path}.{attribute}", allowed=ALLOWED)
            tried += 1
    assert tried > 200  # torch, nn, Path, json, dataclass, ... are imported all over the package


@pytest.mark.parametrize(
    "path, reason",
    [
        ("videovlm.train.cli.os.system", "outside the allowed packages"),  # the reported one: cli is not a component module
        ("videovlm.convert_cli.run", "outside the allowed packages"),  # command modules live outside the component packages
        ("videovlm.models.weights._save_weights", "private or a dunder"),  # deletes and writes weight files
        ("videovlm.models.base.json.loads", "is the module 'json'"),
        ("videovlm.models.base.torch.save", "is the module 'torch'"),
        ("videovlm.models.hf.AutoConfig.from_pretrained", "defined in 'transformers"),
        ("videovlm.train.datasets.Path", "defined in 'pathlib'"),
        ("videovlm.train.backbones.text.transformers.AutoModel", "is the module 'transformers'"),
        ("torch.optim.adamw.Tensor", "defined in 'torch'"),
        ("torch.optim.optimizer.torch.load", "is the module 'torch'"),
        ("torch.hub.load", "outside the allowed packages"),
        ("torch.load", "outside the allowed packages"),
        ("transformers.AutoModel.from_pretrained", "outside the allowed packages"),
        ("transformers.pipeline", "outside the allowed packages"),
        ("videovlm.models.__builtins__", "private or a dunder"),
        ("videovlm.models.VideoLlamaModel.__init__.__globals__", "private or a dunder"),
        ("videovlm.models.base._key_paths", "private or a dunder"),
        ("videovlm.recipes.videobert_eval.main", "command-line entry point"),
        ("videovlm.train.backbones.__main__.main", "private or a dunder"),
        ("videovlm.models.base.IGNORE_INDEX", "is a int"),
        ("videovlm.models", "no importable module"),
        ("videovlm.models.temporal", "is the module 'videovlm.models.temporal'"),
        ("videovlm.models.VideoLlamaModel.PART_NAMES", "is a tuple"),
        ("videovlm.models.VideoLlamaModel.parameters", "defined in 'torch.nn"),  # inherited from nn.Module
        ("os.system", "outside the allowed packages"),
        ("videovlm.models.base.os..system", "not a Python identifier"),
    ],
)
def test_payloads_are_refused_with_the_reason(path, reason):
    with pytest.raises(ComponentError, match=re.escape(reason)):
        resolve_component(path, allowed=ALLOWED)


def test_components_the_recipes_use_still_resolve():
    import torch

    from videovlm.models import VideoLlamaModel
    from videovlm.models.temporal import VideoQFormer

    assert resolve_component("torch.optim.AdamW", allowed=ALLOWED) is torch.optim.AdamW
    assert resolve_component("torch.optim.lr_scheduler.LambdaLR", allowed=ALLOWED) is torch.optim.lr_scheduler.LambdaLR
    assert resolve_component("videovlm.models.temporal.VideoQFormer", allowed=ALLOWED) is VideoQFormer
    bound = resolve_component("videovlm.models.VideoLlamaModel.from_pretrained", allowed=ALLOWED)
    assert bound.__self__ is VideoLlamaModel  # a classmethod, bound like Class.method
    for recipe in sorted((REPO_ROOT / "recipes").rglob("*.yaml")):
        for path in _component_paths(yaml.safe_load(recipe.read_text())):
            resolve_component(path, allowed=ALLOWED)


def _component_paths(data):
    if isinstance(data, dict):
        if "_component_" in data:
            yield data["_component_"]
        for value in data.values():
            yield from _component_paths(value)
    elif isinstance(data, list):
        for value in data:
            yield from _component_paths(value)


def test_instantiate_refuses_nested_payloads_before_calling_anything(tmp_path):
    marker = tmp_path / "ran"
    nested = {
        "_component_": "torch.optim.SGD",
        "params": [{"_component_": "videovlm.train.datasets.Path.write_text", "self": str(marker), "data": "x"}],
    }
    with pytest.raises(ComponentError):
        instantiate(nested)
    assert not marker.exists()


def _problems(data) -> list[str]:
    with pytest.raises(ConfigError) as info:
        validate(data, allowed_packages=(*ALLOWED, "tests.train.tiny"))
    return info.value.problems


def test_every_recipe_slot_and_any_depth_is_checked(video_set, tmp_path):
    payload = {"_component_": "videovlm.models.pixels.torch.hub.load", "repo_or_dir": "."}
    data = recipe_dict(video_set, tmp_path / "out")
    data["model"]["extra"] = {"deep": [{"list": [payload]}]}
    data["optimizer"] = {"_component_": "torch.optim.SGD", "foreach": payload}
    data["stages"][0]["data"]["train"][0]["sampler"] = payload
    data["stages"][1]["data"]["train"] = [payload]
    problems = "\n".join(_problems(data))
    for where in ("model.extra.deep[0].list[0]", "optimizer.foreach", "stages[0].data.train[0].sampler", "stages[1].data.train[0]"):
        assert f"{where}._component_: " in problems and "is the module 'torch'" in problems, where


def test_trust_remote_code_is_refused_anywhere_in_a_recipe(video_set, tmp_path):
    data = recipe_dict(video_set, tmp_path / "out")
    data["model"]["hf_kwargs"] = {"trust_remote_code": True}
    data["stages"][0]["data"]["train"][0]["options"] = [{"trust_remote_code": False}]
    problems = _problems(data)
    assert "model.hf_kwargs.trust_remote_code: not allowed in a recipe" in problems[0]
    assert any(p.startswith("stages[0].data.train[0].options[0].trust_remote_code: not allowed") for p in problems)


SHELL_PAYLOADS = [
    ("model._component_", "videovlm.train.cli.os.system"),
    ("model._component_", "videovlm.models.hf.AutoConfig.from_pretrained"),
    ("optimizer._component_", "torch.optim.optimizer.torch.load"),
    ("stages.0.data.train.0.sampler", '{"_component_": "videovlm.video.samplers.base.os.system", "command": "touch MARK"}'),
]


@pytest.mark.parametrize("command", ["train", "cache-features"])
def test_commands_refuse_payloads_before_building_anything(command, video_set, tmp_path, capsys, monkeypatch):
    """``videovlm train --dry-run`` and ``cache-features`` exit 2 and run nothing."""
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(recipe_dict(video_set, tmp_path / "out")))
    for key, value in SHELL_PAYLOADS:
        override = f"{key}={value}"
        args = ["train", str(recipe), "--dry-run", override] if command == "train" else ["cache-features", "--recipe", str(recipe), override]
        if key == "model._component_":
            args.append("model.command=touch MARK")
        assert main([*args, "--allow-package", "tests.train.tiny"]) == 2, override
        err = capsys.readouterr().err
        assert "_component_" in err and "Traceback" not in err, err
        assert not (tmp_path / "MARK").exists()
        assert not (tmp_path / "out").exists()


def test_allow_package_widens_only_from_the_command_line():
    with pytest.raises(ComponentError, match="outside the allowed packages"):
        resolve_component("tests.train.tiny.TinyVideoClassifier", allowed=ALLOWED)
    assert resolve_component("tests.train.tiny.TinyVideoClassifier", allowed=(*ALLOWED, "tests.train.tiny")).__name__ == "TinyVideoClassifier"
    # a widened list still refuses what the widened module merely imported
    with pytest.raises(ComponentError, match="is the module 'torch'"):
        resolve_component("tests.train.tiny.torch.load", allowed=(*ALLOWED, "tests.train.tiny"))


def test_resolution_never_imports_modules_outside_the_allowed_packages():
    code = (
        "import sys; from videovlm.components import resolve_component, ComponentError\n"
        "for p in ('antigravity.fly', 'this.s', 'videovlm.train.cli.main', 'videovlm.quickstart.main'):\n"
        "    try: resolve_component(p, allowed=('videovlm.models.',))\n"
        "    except ComponentError: pass\n"
        "print(sorted(m for m in ('antigravity', 'this', 'videovlm.train.cli', 'videovlm.quickstart') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
