"""Temporal encoders under DeepSpeed ZeRO-3: parameters are partitioned (empty) outside the
forward/backward hooks, which fire only when DeepSpeed can see the tensors a module returns."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from deepspeed.runtime.zero.utils import isinstance_namedtuple

from videovlm.models.temporal import VideoTokens

SCRIPT = textwrap.dedent(
    """
    import importlib, os, socket
    os.environ["DS_ACCELERATOR"] = "cpu"
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import torch, deepspeed
    importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
    deepspeed.init_distributed(dist_backend="gloo")
    from videovlm.models.temporal import VideoQFormer, VideoQFormerConfig

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = VideoQFormer(VideoQFormerConfig(input_dim=32, output_dim=16, num_queries=4, max_frames=8, num_layers=1, num_heads=2))
            self.head = torch.nn.Linear(16, 1)

        def forward(self, frame_tokens):
            return self.head(self.encoder(frame_tokens).tokens).mean()

    torch.manual_seed(0)
    model = Probe()
    config = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": 3}, "zero_force_ds_cpu_optimizer": False}
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters(), 1e-3), config=config)
    losses = []
    for _ in range(2):
        loss = engine(torch.randn(2, 4, 5, 32))
        engine.backward(loss)
        engine.step()
        losses.append(loss.item())
    print("LOSSES", losses)
    """
)


def test_video_tokens_is_a_namedtuple_deepspeed_can_traverse():
    tokens = VideoTokens(tokens=None, mask=None)
    assert isinstance_namedtuple(tokens)


def test_video_qformer_trains_under_zero3(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**__import__("os").environ, "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LOSSES" in result.stdout
