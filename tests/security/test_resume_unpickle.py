"""``resume=true`` never unpickles: a file planted in a run's checkpoint is refused, not run.

DeepSpeed reads its own state files with ``torch.load(weights_only=False)``; the engine forces
weights-only loading around it. The planted payload would create a marker file when
unpickled (harmless, and visible); the run must stop with a ``CheckpointError`` naming the
folder and leave no marker. An untouched copy of the same checkpoint still resumes (ZeRO-1:
its optimizer file holds DeepSpeed's LossScaler and fragment records, loaded as allowed globals).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml

from tests.train.conftest import killing_launcher, recipe_dict, run_train, train_env

pytestmark = pytest.mark.slow


class Payload:
    """Unpickling this runs ``exec``: it writes ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('unpickled')",))


@pytest.fixture(scope="module")
def killed_run(video_set, tmp_path_factory) -> tuple[Path, Path]:
    """A one-stage ZeRO-1 run killed after step 2 (checkpoint-2 written): (recipe, run dir)."""
    root = tmp_path_factory.mktemp("resume")
    data = recipe_dict(video_set, root / "run")
    data["deepspeed"] = {"zero_stage": 1}
    data["stages"] = data["stages"][:1]
    data["stages"][0].update(steps=4, warmup_steps=0)
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(data))
    result = run_train(recipe, env=train_env(root), launcher=killing_launcher(2))
    assert result.returncode != 0 and (root / "run" / "first" / "checkpoint-2").is_dir(), result.stderr[-3000:]
    return recipe, root / "run"


@pytest.mark.parametrize("planted", ["mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt"])
def test_planted_pickle_is_refused_on_resume(killed_run, planted, tmp_path):
    recipe, pristine = killed_run
    run = tmp_path / "run"
    shutil.copytree(pristine, run)
    state = run / "first" / "checkpoint-2" / "deepspeed" / "state"
    assert (state / planted).is_file(), sorted(p.name for p in state.iterdir())
    marker = tmp_path / "MARKER"
    torch.save({"module": Payload(marker), "optimizer_state_dict": Payload(marker)}, state / planted)
    result = run_train(recipe, f"output_dir={run}", "resume=true", env=train_env(tmp_path))
    assert result.returncode == 1, result.stderr[-3000:]
    assert "CheckpointError" in result.stderr and "refused to load a DeepSpeed state file" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists(), "the planted pickle ran"


def test_untouched_checkpoint_still_resumes(killed_run, tmp_path):
    recipe, pristine = killed_run
    run = tmp_path / "run"
    shutil.copytree(pristine, run)
    result = run_train(recipe, f"output_dir={run}", "resume=true", env=train_env(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stderr and (run / "first" / "final" / "model.safetensors").is_file()
