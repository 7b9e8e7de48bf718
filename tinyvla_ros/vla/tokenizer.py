"""Offline tokenizers and the prompt with its ``<image>`` placeholder.

* The paper presets use the Pythia (GPT-NeoX) tokenizer, which ships with a Llava-Pythia
  checkpoint (``tokenizer.json``) and is stored again with every checkpoint we save.
* The small presets use a tiny byte-level BPE tokenizer that this module builds, deterministically
  and offline, from a built-in vocabulary of manipulation instructions (any text still
  tokenises: unseen words fall back to byte tokens).

``PromptTokenizer`` turns an instruction into ``input_ids`` of the prompt
``USER: <image>\\n{instruction} ASSISTANT:`` with ``IMAGE_TOKEN_INDEX`` at the placeholder
(LLaVA convention: a negative id that is never embedded; the backbone splices the image tokens
there). The placeholder position is the same for every instruction (``image_position``).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from tinyvla_ros.vla.config import IMAGE_PLACEHOLDER

logger = logging.getLogger(__name__)

IMAGE_TOKEN_INDEX = -200
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|padding|>"
TINY_VOCAB_SIZE = 2048

# Words of robot manipulation instructions: the corpus the tiny BPE tokenizer is trained on.
_WORDS = """
USER ASSISTANT user assistant robot arm arms gripper grippers hand hands left right both top bottom
pick place put push pull lift lower raise move grasp grab hold release drop open close turn rotate
twist flip press slide stack unstack insert remove take give pour wipe fold unfold hang hook plug
unplug sweep scoop stir reach point touch tap shake throw catch carry bring fetch return reset go
stop wait follow align center centre tilt tip rest set up down in into on onto off out of from to
toward towards away over under above below beside behind front back next near far between inside
outside across along around through against forward backward sideways upward downward clockwise
counterclockwise the a an this that these those it its them and or then while until after before
with without by at for is are be can please slowly quickly gently carefully again once twice all
red green blue yellow orange purple pink black white gray grey brown cyan magenta silver golden
dark light bright small large big little tiny long short tall round square flat empty full
cube cubes block blocks box boxes bowl bowls cup cups mug mugs plate plates bottle bottles can cans
lid lids drawer drawers door doors cabinet shelf table tray basket bin bag bags towel cloth sponge
spoon fork knife pen marker ball balls toy toys fruit apple banana orange lemon bread carrot tomato
egg potato onion peach pear grape corn tennis bread slice plug socket switch button knob handle
faucet sink stove pot pan kettle microwave oven fridge laptop keyboard book books paper box
tape scissors tool tools screw nut bolt peg hole ring rope cable wire object objects item items
first second third last one two three four five six seven eight nine ten
position location spot side edge corner middle goal target home start pose
""".split()


def _corpus() -> list[str]:
    """Deterministic training sentences built from ``_WORDS`` (word windows + the prompt frame)."""
    words = _WORDS
    lines = [" ".join(words[i : i + 8]) for i in range(0, len(words), 3)]
    lines += [f"USER: {w} ASSISTANT:" for w in words]
    lines += [f"USER: <image>\n{w}" for w in words]  # words right after the prompt's newline (no space)
    lines += [" ".join(words)] * 4
    return lines


def build_tiny_tokenizer(vocab_size: int = TINY_VOCAB_SIZE) -> Any:
    """Byte-level BPE tokenizer (transformers fast tokenizer) for the small presets.

    Built offline and deterministically (same vocabulary and merges on every machine and every
    PYTHONHASHSEED). Token 0 is ``<|endoftext|>`` (eos/bos), token 1 ``<|padding|>`` (pad),
    as in Pythia. ``len(tokenizer) <= vocab_size``.
    """
    if vocab_size < 300:
        raise ValueError(f"vocab_size must be >= 300 (256 byte tokens + specials + merges), got {vocab_size}")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
    )


def load_tokenizer(path: str | Path) -> Any:
    """Load a fast tokenizer saved in directory ``path`` (needs ``tokenizer.json``; offline)."""
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(
            f"no tokenizer.json in {path}: a checkpoint must carry its tokenizer (fast tokenizer file)"
        )
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path), local_files_only=True)
    return ensure_pad_token(tokenizer, where=str(path))


def ensure_pad_token(tokenizer: Any, where: str = "the tokenizer") -> Any:
    """Give a tokenizer that names no pad token one (in place; returned), and say so in the log.

    A Llava-Pythia directory as downloaded carries the Pythia tokenizer files, which name bos,
    eos and unk (all ``<|endoftext|>``) but no pad token. The official TinyVLA / LLaVA training
    sets ``tokenizer.pad_token = tokenizer.unk_token``: that is the choice here. Without an unk
    token, ``<|padding|>`` (Pythia's id 1) if the vocabulary has it, else the eos token. Padding
    positions are masked everywhere (attention, pooling), so the choice does not change outputs.
    """
    if tokenizer.pad_token_id is not None:
        return tokenizer
    if tokenizer.unk_token is not None:
        pad, why = tokenizer.unk_token, "the unk token, as the official TinyVLA training does"
    elif PAD_TOKEN in tokenizer.get_vocab():
        pad, why = PAD_TOKEN, "Pythia's padding token (the tokenizer names no unk token)"
    elif tokenizer.eos_token is not None:
        pad, why = tokenizer.eos_token, "the eos token (the tokenizer names no unk token)"
    else:
        raise ValueError(f"{where}: the tokenizer names no pad, unk or eos token to pad prompts with")
    tokenizer.pad_token = pad
    logger.warning(
        "%s: the tokenizer names no pad token; padding with %r (id %d), %s",
        where,
        pad,
        tokenizer.pad_token_id,
        why,
    )
    return tokenizer


class PromptTokenizer:
    """Instruction -> prompt ``input_ids`` with the image placeholder; cached per instruction.

    image_position: index of IMAGE_TOKEN_INDEX in every ``input_ids`` row (prompt prefix length).
    Thread-safe cache of up to ``cache_size`` instructions.
    """

    def __init__(self, tokenizer: Any, template: str, max_tokens: int, cache_size: int = 256) -> None:
        self.tokenizer = tokenizer
        self.template = template
        self.max_tokens = max_tokens
        prefix, rest = template.split(IMAGE_PLACEHOLDER)
        self._prefix_ids = self._encode(prefix)
        self._suffix_template = rest
        self.image_position = len(self._prefix_ids)
        if tokenizer.pad_token_id is None:
            raise ValueError("tokenizer has no pad token: set tokenizer.pad_token before building the policy")
        self.pad_id = int(tokenizer.pad_token_id)
        self._cache: OrderedDict[str, list[int]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def __deepcopy__(self, memo: dict) -> PromptTokenizer:
        """Copies share the (immutable) tokenizer and get their own cache and lock."""
        return PromptTokenizer(self.tokenizer, self.template, self.max_tokens, self._cache_size)

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def ids(self, instruction: str) -> list[int]:
        """Token ids of the full prompt for ``instruction`` (IMAGE_TOKEN_INDEX at image_position)."""
        if not isinstance(instruction, str):
            raise TypeError(f"instruction must be a str, got {type(instruction).__name__}")
        with self._lock:
            cached = self._cache.get(instruction)
            if cached is not None:
                self._cache.move_to_end(instruction)
                return cached
        suffix = self._encode(self._suffix_template.replace("{instruction}", instruction.strip()))
        ids = self._prefix_ids + [IMAGE_TOKEN_INDEX] + suffix
        if len(ids) > self.max_tokens:
            raise ValueError(
                f"instruction {instruction[:60]!r} gives {len(ids)} prompt tokens, more than "
                f"max_text_tokens={self.max_tokens}; shorten it or raise max_text_tokens"
            )
        with self._lock:
            self._cache[instruction] = ids
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return ids

    def batch(self, instructions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ``input_ids`` (B, L) long and ``attention_mask`` (B, L) long (1 = token)."""
        if not instructions:
            raise ValueError("instructions must be a non-empty list of strings")
        rows = [self.ids(text) for text in instructions]
        length = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        return input_ids, mask
