"""torch_compile engine: graphs captured by torch.compile give the torch engine's chunk."""

from __future__ import annotations

import numpy as np
import pytest

from tinyvla_ros.vla.engines import load_engine
from tinyvla_ros.vla.engines.base import EngineConfig
from tinyvla_ros.vla.engines.compiled import TorchCompileEngine
from tinyvla_ros.vla.engines.eager import TorchEngine
from tinyvla_ros.vla.policy import TinyVLAPolicy


@pytest.mark.slow
def test_compiled_engine_matches_eager(franka_ckpt, observation):
    # backend "eager": dynamo captures the graphs (the compile path) without inductor's minutes of codegen.
    cfg = EngineConfig(engine="torch_compile")
    compiled = TorchCompileEngine(TinyVLAPolicy.from_pretrained(franka_ckpt), cfg, backend="eager")
    eager = TorchEngine(TinyVLAPolicy.from_pretrained(franka_ckpt), EngineConfig())
    images, state = observation(2, 8, seed=3)
    got = compiled.predict_chunk(images, "pick up the red cube", state, seed=4)
    ref = eager.predict_chunk(images, "pick up the red cube", state, seed=4)
    assert compiled.name == "torch_compile"
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)


def test_load_engine_builds_compile_engine_and_checks_options(franka_ckpt):
    engine = load_engine(franka_ckpt, engine="torch_compile", num_threads=1)  # compiles lazily: no cost here
    assert isinstance(engine, TorchCompileEngine) and engine.backend == "inductor"
    with pytest.raises(ValueError, match="backend must be one of.*'tvm'"):
        TorchCompileEngine(engine.policy, EngineConfig(), backend="tvm")
