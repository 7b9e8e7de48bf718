"""`tinyvla-model info` on presets and checkpoints."""

from __future__ import annotations

import json

from tinyvla_ros.vla.cli import main
from tinyvla_ros.vla.testing import make_tiny_checkpoint


def _info(capsys, *args: str) -> dict:
    assert main(["info", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_paper_preset(capsys):
    s = _info(capsys, "tinyvla-s")
    assert s["name"] == "tinyvla-s" and s["source"] == "preset"
    p = s["parameters"]
    assert p["total"] == p["vision"] + p["projector"] + p["llm"] + p["head"]
    assert abs(p["total"] - 422e6) / 422e6 < 0.03 and s["paper_total"] == 422_000_000
    assert s["trainable"]["lora_variant"] == "official"
    assert s["lora_variants"]["paper"]["trainable"] < s["lora_variants"]["official"]["trainable"]
    assert s["image_size"] == 336 and s["image_tokens_per_camera"] == 576 and s["chunk_len"] == 16


def test_info_with_overrides(capsys):
    s = _info(capsys, "nano", "--set", "action_dim=14", "--set", 'camera_names=["l", "r", "top"]')
    assert s["action_dim"] == 14 and s["camera_names"] == ["l", "r", "top"]


def test_info_checkpoint_dir(capsys, tmp_path):
    path = make_tiny_checkpoint(tmp_path / "ck", ["wrist", "top"], state_dim=7, action_dim=8)
    s = _info(capsys, str(path))
    assert s["source"] == "checkpoint" and s["camera_names"] == ["wrist", "top"] and s["action_dim"] == 8


def test_info_errors(capsys, tmp_path):
    assert main(["info", "no-such-preset"]) == 2
    assert "neither a preset" in capsys.readouterr().err
    assert main(["info", "nano", "--set", "chunk_len=18"]) == 2
    assert "chunk_len (18) must be divisible by 4" in capsys.readouterr().err
    assert main(["info", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err
