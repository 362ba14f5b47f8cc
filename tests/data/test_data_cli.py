"""`videovlm data synth` and `videovlm data card` through the console entry point."""

from __future__ import annotations

import json

from videovlm.cli import main


def test_synth_writes_data_and_card(tmp_path, capsys):
    out, card = tmp_path / "out", tmp_path / "card" / "README.md"
    assert main(["data", "synth", str(out), "--train", "2", "--val", "1", "--test", "1", "--seed", "3", "--size", "64", "--frames", "8", "--fps", "4", "--workers", "1", "--quiet", "--card", str(card)]) == 0
    assert "wrote 4 videos" in capsys.readouterr().out
    stats = json.loads((out / "stats.json").read_text())
    assert stats["params"] == {"train": 2, "val": 1, "test": 1, "seed": 3, "size": 64, "frames": 8, "fps": 4.0}
    text = card.read_text()
    assert text == (out / "README.md").read_text()
    assert "--size 64 --frames 8 --fps 4" in text and "| direction (temporal) |" in text and "Generation time" in text
    assert main(["data", "card", str(out)]) == 0
    assert "order-blind ceiling" in capsys.readouterr().out
    # A non-empty output is refused (exit 2) unless --overwrite.
    assert main(["data", "synth", str(out), "--train", "1", "--val", "0", "--test", "0", "--workers", "1", "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["data", "synth", str(out), "--train", "1", "--val", "0", "--test", "0", "--size", "64", "--workers", "1", "--quiet", "--overwrite"]) == 0
    assert len(list((out / "train" / "videos").glob("*.mp4"))) == 1


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert main(["data", "synth", str(tmp_path / "o"), "--size", "33", "--quiet"]) == 2
    assert "--size" in capsys.readouterr().err
    assert main(["data", "card", str(tmp_path / "nothing")]) == 2
    assert "stats.json not found" in capsys.readouterr().err


def test_overwrite_removes_only_a_generated_data_set(tmp_path, capsys):
    synth = ["data", "synth", "--train", "1", "--val", "0", "--test", "0", "--size", "48", "--frames", "8", "--workers", "1", "--quiet"]
    # A folder of the user's that happens to have a train/ folder: --overwrite must not empty it.
    mine = tmp_path / "project"
    (mine / "train").mkdir(parents=True)
    (mine / "train" / "model.py").write_text("my code")
    assert main([*synth, str(mine), "--overwrite"]) == 2
    assert "nothing was removed" in capsys.readouterr().err
    assert (mine / "train" / "model.py").read_text() == "my code"
    # A run stopped midway left its marker (written first) and part of a split: replaced.
    stopped = tmp_path / "stopped"
    assert main([*synth, str(stopped)]) == 0
    (stopped / "stats.json").unlink()
    (stopped / "train" / "partial.mp4").write_bytes(b"half")
    assert main([*synth, str(stopped), "--overwrite"]) == 0
    assert not (stopped / "train" / "partial.mp4").exists() and (stopped / "stats.json").is_file()


def test_synth_sizes_are_capped(tmp_path, capsys):
    for option, value in [("--size", "100000"), ("--frames", "100000")]:
        assert main(["data", "synth", str(tmp_path / "o"), option, value, "--quiet"]) == 2
        assert f"{option} must be" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
