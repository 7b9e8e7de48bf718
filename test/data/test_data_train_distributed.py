"""Training on several processes through accelerate: the data sharding, the 2-process run (gloo on
CPU) that trains the weights of the 1-process run and resumes in one process, and the full
optimizer state FSDP checkpoints go through."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")
from safetensors.torch import load_file  # noqa: E402

import tinyvla_ros  # noqa: E402
from tinyvla_ros.data import train as train_module  # noqa: E402
from tinyvla_ros.data.train import EMA_FILE, StepBatches, TrainConfig, Trainer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

# Max |w_2proc - w_1proc| over every weight after 2 and 4 AdamW steps at lr 3e-4. The two runs see
# the same samples, augmentations and noise; they differ only in float summation order (the
# gradient of 2 half-batches averaged vs 1 whole batch, prompts padded to another length), which
# AdamW's normalised steps carry to 7.7e-6 in a few weights (measured here). Another data order
# moves the weights by 1.4e-3 (measured): the test asserts > 10 x TOLERANCE for it.
TOLERANCE = 5e-5


def test_rank_shards_put_together_are_the_one_process_batch():
    one = list(StepBatches(100, 8, seed=3, start=2, total=5, accum=2))
    for world in (2, 4):
        shards = [list(StepBatches(100, 8, 3, 2, 5, 2, rank=r, world=world)) for r in range(world)]
        assert all(len(s) == len(one) == 6 for s in shards)
        for i, batch in enumerate(one):
            assert sum((s[i] for s in shards), []) == batch  # same samples, same augmentation seeds
        assert all(len(s[0]) == 8 // world for s in shards)
    other = list(StepBatches(100, 8, seed=4, start=2, total=5, accum=2))
    assert [b[0] for b in other] != [b[0] for b in one]  # the seed decides the order
    with pytest.raises(ValueError, match="must divide by the 3 processes"):
        StepBatches(100, 8, 3, 0, 5, 1, rank=0, world=3)


def _cfg(dataset, out, **kw) -> TrainConfig:
    base = dict(dataset=str(dataset), output=str(out), preset="nano", steps=4, batch_size=4, grad_accum=2,
                warmup_steps=1, val_every=2, save_every=2, log_every=1, val_batches=1, progress=False,
                lr=3e-4, ema=True, device="cpu", num_threads=1)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def _argv(cfg: TrainConfig) -> list[str]:
    """The tinyvla-train command line of ``cfg`` (the options _cfg sets)."""
    return [cfg.dataset, "--out", cfg.output, "--preset", cfg.preset, "--steps", str(cfg.steps),
            "--batch-size", str(cfg.batch_size), "--grad-accum", str(cfg.grad_accum),
            "--warmup-steps", str(cfg.warmup_steps), "--val-every", str(cfg.val_every),
            "--save-every", str(cfg.save_every), "--log-every", str(cfg.log_every), "--lr", str(cfg.lr),
            "--device", "cpu", "--num-threads", "1", "--no-progress", "--ema"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_two_processes(cfg: TrainConfig) -> subprocess.CompletedProcess:
    """``accelerate launch`` of tinyvla-train on 2 CPU processes (torchrun underneath, gloo)."""
    root = str(Path(tinyvla_ros.__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p)}  # fmt: skip
    env.pop("ACCELERATE_CONFIG_FILE", None)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--num_cpu_threads_per_process", "1", "--main_process_port", str(_free_port()),
           "-m", "tinyvla_ros.data.train", *_argv(cfg)]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _max_diff(a: Path, b: Path) -> float:
    x, y = load_file(str(a)), load_file(str(b))
    assert x.keys() == y.keys()
    return max(float((x[k].float() - y[k].float()).abs().max()) for k in x)


def _logged(run: Path, key: str = "loss") -> list[float]:
    return [m[key] for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if key in m]


class _OtherOrder(StepBatches):
    """The data order of another seed (model initialisation and diffusion noise unchanged)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seed += 1


@pytest.mark.slow
def test_two_processes_train_the_weights_of_one_and_their_checkpoint_resumes_in_one(
    demo_dataset, tmp_path, monkeypatch
):
    two = _cfg(demo_dataset, tmp_path / "two")
    done = _launch_two_processes(two)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "training on 2 processes (MULTI_CPU): 2 samples each per micro-batch of 4" in done.stderr
    assert done.stdout.count("ready-to-deploy checkpoint") == 1  # the main process reports
    described = json.loads((tmp_path / "two" / "train_config.json").read_text())["distributed"]
    assert described["processes"] == 2 and described["per_process_batch"] == 2
    assert described["global_batch"] == 8

    one_final = Trainer(_cfg(demo_dataset, tmp_path / "one")).run()
    two_final = tmp_path / "two" / "final"
    # the same global batches: the same weights (raw at steps 2 and 4, and the EMA deployed)
    for step in ("step_00000002", "step_00000004"):
        a = tmp_path / "two" / "checkpoints" / step
        b = tmp_path / "one" / "checkpoints" / step
        assert _max_diff(a / "model.safetensors", b / "model.safetensors") < TOLERANCE, step
        assert _max_diff(a / EMA_FILE, b / EMA_FILE) < TOLERANCE, step
    assert _max_diff(two_final / "model.safetensors", one_final / "model.safetensors") < TOLERANCE
    # only the main process logged: one line per step, the global batch's loss
    assert len(_logged(tmp_path / "two")) == 4
    assert _logged(tmp_path / "two") == pytest.approx(_logged(tmp_path / "one"), rel=1e-5)
    # and the gradient norm: AdamW hides a gradient scaled by a constant from the weights, not from it
    two_norms, one_norms = _logged(tmp_path / "two", "grad_norm"), _logged(tmp_path / "one", "grad_norm")
    assert two_norms == pytest.approx(one_norms, rel=1e-4)

    # the check can fail: another data order (same initial weights and noise) is far outside it
    monkeypatch.setattr(train_module, "StepBatches", _OtherOrder)
    other = Trainer(_cfg(demo_dataset, tmp_path / "other")).run()
    monkeypatch.undo()
    assert _max_diff(two_final / "model.safetensors", other / "model.safetensors") > 10 * TOLERANCE

    # the 2-process checkpoint at step 2 resumes in 1 process and ends where 1 process does
    resumed_run = tmp_path / "resumed"
    shutil.copytree(tmp_path / "two", resumed_run)
    shutil.rmtree(resumed_run / "final")
    shutil.rmtree(resumed_run / "checkpoints" / "step_00000004")
    state = json.loads((resumed_run / "checkpoints" / "step_00000002" / "trainer_state.json").read_text())
    assert state["processes"] == 2 and state["step"] == 2
    resumed = Trainer(_cfg(demo_dataset, resumed_run, resume=True)).run()
    assert _max_diff(resumed / "model.safetensors", one_final / "model.safetensors") < TOLERANCE
    assert json.loads((resumed / "training.json").read_text())["processes"] == 1
    assert len(_logged(resumed_run)) == 4


def test_full_optimizer_state_through_torch_distributed_checkpoint_is_the_checkpoint_state(
    demo_dataset, tmp_path
):
    """What FSDP checkpoints go through (torch.distributed.checkpoint keys the optimizer state by
    parameter name; checkpoints by index), here on one process: the same state both ways, on a
    LoRA policy (two groups, unused CLIP-layer weights without state)."""
    from tinyvla_ros.data.distributed import gather_optimizer_state, scatter_optimizer_state

    trainer = Trainer(_cfg(demo_dataset, tmp_path / "lora", lora=True, ema=False, steps=2, stop_after=1))
    trainer.run()  # stops before the merge: the optimizer's LoRA weights are still in the model
    model, optimizer = trainer.policy, trainer.optimizer.optimizer
    assert len(optimizer.param_groups) == 2
    reference = optimizer.state_dict()
    assert 0 < len(reference["state"]) < sum(len(g["params"]) for g in optimizer.param_groups)
    gathered = gather_optimizer_state(model, optimizer, model)
    assert gathered["param_groups"] == reference["param_groups"]
    assert sorted(gathered["state"]) == sorted(reference["state"])
    for i, entries in reference["state"].items():
        for key, value in entries.items():
            torch.testing.assert_close(gathered["state"][i][key], value, rtol=0, atol=0)
    saved = {i: {k: v.clone() for k, v in e.items()} for i, e in reference["state"].items()}
    for entries in optimizer.state.values():
        entries["exp_avg"].zero_()
    scatter_optimizer_state(model, optimizer, model, {**reference, "state": saved})
    restored = optimizer.state_dict()["state"]
    assert sorted(restored) == sorted(saved)
    for i, entries in saved.items():
        torch.testing.assert_close(restored[i]["exp_avg"], entries["exp_avg"], rtol=0, atol=0)
    assert sum(int((e["exp_avg"] != 0).sum()) for e in saved.values()) > 1000  # zeroed, then restored


def test_the_committed_accelerate_configs_load_and_name_the_models_layers():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    from tinyvla_ros.vla.config import get_config
    from tinyvla_ros.vla.policy import TinyVLAPolicy

    root = Path(tinyvla_ros.__file__).resolve().parents[1] / "config" / "accelerate"
    single, multi, fsdp = (
        load_config_from_file(str(root / f"{n}.yaml")) for n in ("single_gpu", "multi_gpu", "fsdp")
    )
    assert (single.distributed_type, single.num_processes) == (DistributedType.NO, 1)
    assert (multi.distributed_type, multi.num_processes) == (DistributedType.MULTI_GPU, 8)
    assert fsdp.distributed_type == DistributedType.FSDP and fsdp.fsdp_config["fsdp_version"] == 2
    assert {c.mixed_precision for c in (single, multi, fsdp)} == {"bf16"}
    with torch.device("meta"):
        layers = {type(m).__name__ for m in TinyVLAPolicy(get_config("nano")).modules()}
    wrapped = set(fsdp.fsdp_config["fsdp_transformer_layer_cls_to_wrap"].split(","))
    assert wrapped == {"GPTNeoXLayer", "CLIPEncoderLayer"} and wrapped <= layers
    assert "accelerate launch" in (root / "slurm.sbatch").read_text()


def test_a_launcher_precision_other_than_precision_is_refused(monkeypatch):
    from tinyvla_ros.data.distributed import make_accelerator

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    with pytest.raises(ValueError, match="pass --precision bf16"):
        make_accelerator("fp32", "cpu", 1)
    assert make_accelerator("bf16", "cpu", 2).mixed_precision == "bf16"
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # what the launcher sets when not told
    accelerator = make_accelerator("fp32", "cpu", 3)
    assert accelerator.mixed_precision == "no" and accelerator.gradient_accumulation_steps == 3
