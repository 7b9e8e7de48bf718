"""tinyvla_ros.vla: the TinyVLA model (torch, no ROS).

config       TinyVLAConfig, get_config(name, **overrides), PRESETS
policy       TinyVLAPolicy: forward(batch) -> loss, predict_chunk(...) -> (T, Da) robot units
normalize    Normalizer (actions min-max to [-1, 1], state z-score), JSON beside the weights
checkpoint   save/load (config.json, model.safetensors, stats.json, tokenizer), CheckpointMismatchError
llava_pythia load_llava_pythia(dir, **robot): start from an official Llava-Pythia VLM initialiser
backbone, head, lora, tokenizer, preprocess: the parts; cli: `tinyvla-model info|bench`
engines      load_engine(dir, engine=...): the inference engines (torch, torch_compile, onnx)
export       `tinyvla-export`: ONNX graphs of a checkpoint, checked by engines/parity.py
"""

from tinyvla_ros.vla.checkpoint import CheckpointMismatchError
from tinyvla_ros.vla.config import PRESETS, TinyVLAConfig, get_config
from tinyvla_ros.vla.llava_pythia import load_llava_pythia
from tinyvla_ros.vla.normalize import Normalizer
from tinyvla_ros.vla.policy import TinyVLAPolicy

__all__ = [
    "PRESETS",
    "CheckpointMismatchError",
    "Normalizer",
    "TinyVLAConfig",
    "TinyVLAPolicy",
    "get_config",
    "load_llava_pythia",
]
