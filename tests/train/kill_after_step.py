"""Run ``videovlm ...`` in this process and SIGKILL it once N optimizer steps are done: after
step N's log line and checkpoint, before step N + 1 reads a batch (the crash a resume test
recovers from). Fault injection lives here, in the tests, not in the engine.

Usage: python tests/train/kill_after_step.py N videovlm train RECIPE [key=value ...]"""

import os
import signal
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as videovlm.cli does, before torch loads

from videovlm.cli import main  # noqa: E402
from videovlm.train import engine  # noqa: E402


def kill_after(steps: int) -> None:
    """Wrap the stage loop's micro-step: the first micro-step of step ``steps + 1`` kills."""
    micro_step = engine._StageLoop._micro_step
    calls = 0

    def killing_micro_step(self, batch):
        nonlocal calls
        if calls == steps * self.stage.gradient_accumulation_steps:
            os.kill(os.getpid(), signal.SIGKILL)
        calls += 1
        return micro_step(self, batch)

    engine._StageLoop._micro_step = killing_micro_step


if __name__ == "__main__":
    steps, program, *argv = sys.argv[1:]
    if program != "videovlm":
        raise SystemExit(f"usage: {sys.argv[0]} N videovlm COMMAND ...")
    kill_after(int(steps))
    sys.exit(main(argv))
