import torch
from safetensors.torch import load_file
from tinyvla_ros.vla.testing import make_tiny_checkpoint
def test_dbg(tmp_path):
    a = make_tiny_checkpoint(tmp_path/"a", ["l","r"], 8, 8, seed=3)
    b = make_tiny_checkpoint(tmp_path/"b", ["l","r"], 8, 8, seed=3)
    sa, sb = load_file(a/"model.safetensors"), load_file(b/"model.safetensors")
    bad = [k for k in sa if not torch.equal(sa[k], sb[k])]
    print(len(bad), bad[:10], torch.get_default_dtype())
    print((a/"config.json").read_text() == (b/"config.json").read_text())
    assert not bad
