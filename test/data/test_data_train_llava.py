"""LoRA training from a Llava-Pythia directory exactly as downloaded: weights under the official
names and the Pythia tokenizer files, which name no pad token (the unk token pads, as in the
official training, and the log says so)."""

from __future__ import annotations

import json
import logging

import pytest

torch = pytest.importorskip("torch")
from test_data_train import _llava_pythia_dir  # noqa: E402

from tinyvla_ros.data.train import TrainConfig, Trainer  # noqa: E402
from tinyvla_ros.vla.llava_pythia import load_llava_pythia  # noqa: E402
from tinyvla_ros.vla.tokenizer import PAD_TOKEN  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

EOT = "<|endoftext|>"


def _downloaded(path):
    """A nano VLM in the official layout with the tokenizer files of a Pythia download:
    tokenizer.json, a transformers-4.x tokenizer_config.json and special_tokens_map.json naming
    bos / eos / unk (all <|endoftext|>) and no pad token."""
    _llava_pythia_dir(path)  # config.json, model.safetensors (official names), tokenizer.json
    added = {
        "0": {"content": EOT, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
              "special": True},
        "1": {"content": PAD_TOKEN, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
              "special": True},
    }  # fmt: skip
    config = {"add_bos_token": False, "add_eos_token": False, "add_prefix_space": False,
              "added_tokens_decoder": added, "bos_token": EOT, "clean_up_tokenization_spaces": True,
              "eos_token": EOT, "model_max_length": 2048, "padding_side": "right",
              "tokenizer_class": "GPTNeoXTokenizer", "unk_token": EOT}  # fmt: skip
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (path / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": EOT, "eos_token": EOT, "unk_token": EOT})
    )
    return path


def test_a_downloaded_tokenizer_without_pad_token_pads_with_unk_and_says_so(tmp_path, caplog):
    path = _downloaded(tmp_path / "llava-pythia")
    with caplog.at_level(logging.WARNING, logger="tinyvla_ros.vla.tokenizer"):
        policy = load_llava_pythia(path, action_dim=8, state_dim=8)
    tok = policy.tokenizer
    assert tok.unk_token == EOT and tok.pad_token == EOT and tok.pad_token_id == tok.unk_token_id == 0
    assert tok.convert_tokens_to_ids(PAD_TOKEN) == 1  # there, but not the official choice
    (record,) = [r for r in caplog.records if "no pad token" in r.getMessage()]
    assert "'<|endoftext|>' (id 0)" in record.getMessage() and "unk token" in record.getMessage()
    ids, mask = policy.tokenize_batch(["go", "pick up the red cube"])
    assert ids[0, int(mask[0].sum()) :].eq(0).all()  # the short prompt is padded with id 0
    # a tokenizer object without a pad token, handed over as is, gets the same choice
    from transformers import PreTrainedTokenizerFast

    bare = PreTrainedTokenizerFast.from_pretrained(str(path), local_files_only=True)
    assert bare.pad_token is None
    assert load_llava_pythia(path, tokenizer=bare, action_dim=8).tokenizer.pad_token_id == 0


def test_lora_training_from_a_downloaded_llava_pythia_directory(demo_dataset, tmp_path, caplog):
    from tinyvla_ros.vla.policy import TinyVLAPolicy

    path = _downloaded(tmp_path / "llava-pythia")
    cfg = TrainConfig(dataset=str(demo_dataset), output=str(tmp_path / "run"), init=str(path), steps=2,
                      batch_size=2, warmup_steps=1, val_every=2, save_every=2, log_every=1, val_batches=1,
                      progress=False)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="tinyvla_ros.vla.tokenizer"):
        trainer = Trainer(cfg)
    assert any("padding with '<|endoftext|>'" in r.getMessage() for r in caplog.records)
    assert trainer.policy.lora_applied and [g["lr"] for g in trainer.optimizer.param_groups] == [2e-4, 2e-5]
    final = trainer.run()
    saved = json.loads((final / "tokenizer_config.json").read_text())
    assert saved["pad_token"] == EOT  # the choice travels with the checkpoint
    policy = TinyVLAPolicy.from_pretrained(final)
    assert policy.tokenizer.pad_token_id == 0 and not policy.lora_applied
