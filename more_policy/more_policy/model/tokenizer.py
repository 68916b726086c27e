"""Tokenizers: a local one for random backbones, and 256 action tokens for any backbone.

No tokenizer can be downloaded here, so random backbones get a small byte-pair tokenizer
trained (deterministically, in milliseconds) on a built-in corpus of robot instructions, with
Fuyu's special tokens (image placeholder, image-row end, begin-answer). Its vocabulary is padded
with unused entries to the backbone's vocabulary size so the 256 action tokens that follow get
the ids ``token_offset + bin`` for the model's new embedding rows.
"""

from __future__ import annotations

import json
import re

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<s>"
EOS_TOKEN = "|ENDOFTEXT|"
IMAGE_TOKEN = "|SPEAKER|"  # Fuyu's image-patch placeholder
IMAGE_ROW_TOKEN = "|NEWLINE|"  # Fuyu's end of an image row of patches
BEGIN_ANSWER_TOKEN = "<0x04>"  # Fuyu's begin-of-answer token
UNK_TOKEN = "<unk>"
FAKE_IMAGE_TOKEN = "<fake_token_around_image>"  # Idefics3's image delimiter
IDEFICS_IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, IMAGE_TOKEN, IMAGE_ROW_TOKEN,
                  BEGIN_ANSWER_TOKEN, UNK_TOKEN, FAKE_IMAGE_TOKEN, IDEFICS_IMAGE_TOKEN)
WORD_BOUNDARY = "\u2581"

_CORPUS = (
    "What action should the legged robot take to {}?",
    "go to the red ball", "go to the blue cube", "go to the green cone",
    "go to the yellow box", "go to the gold pink orange purple object",
    "distinguish letter a b c d e f", "go avoid the obstacle and reach the target",
    "go through the tunnel", "crawl under the gate", "unload the ball into the right tray",
    "slowly quickly fast normal speed with a trot pace bound pronk gait",
    "walk forward backward left right turn stop stand sit",
)


def action_token(bin_index: int) -> str:
    return f"<action_{bin_index}>"


def build_random_tokenizer(base_vocab_size: int, num_bins: int = 256,
                           corpus: tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    """A BPE tokenizer whose ids [0, base_vocab_size) are text and specials, then ``num_bins``
    action tokens (none with ``num_bins=0``: a stand-in for a pretrained checkpoint's).
    ``corpus`` adds training text (pretraining's questions) to the built-in instructions."""
    tok = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
    # SentencePiece-style word boundaries, like Fuyu's tokenizer.
    tok.normalizer = normalizers.Sequence([normalizers.Replace(" ", WORD_BOUNDARY),
                                           normalizers.Prepend(WORD_BOUNDARY)])
    image_tokens = Regex("|".join(re.escape(t) for t in (IMAGE_TOKEN, IMAGE_ROW_TOKEN)))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(image_tokens, behavior="isolated"),
        pre_tokenizers.Metaspace(replacement=WORD_BOUNDARY, prepend_scheme="never")])
    tok.decoder = decoders.Metaspace(replacement=WORD_BOUNDARY, prepend_scheme="always")
    alphabet = [chr(c) for c in range(32, 127)] + [WORD_BOUNDARY]
    budget = min(base_vocab_size, 1024)
    trainer = trainers.BpeTrainer(vocab_size=budget, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator([c.format("go to the ball") for c in _CORPUS] * 2 + list(corpus),
                            trainer)

    # Pad the BPE vocabulary with unused entries up to the backbone's vocabulary size.
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    if len(vocab) > base_vocab_size:
        raise ValueError(f"base vocabulary {base_vocab_size} is smaller than the tokenizer's "
                         f"{len(vocab)} entries")
    for i in range(len(vocab), base_vocab_size):
        vocab[f"<unused_{i}>"] = i
    # Fuyu's processor tokenizes "<image rows><s>" and drops the first token, expecting the
    # word boundary the normalizer prepends. So, as in Fuyu's own tokenizer, the image tokens
    # are ordinary vocabulary entries (not added tokens, which bypass the normalizer): a
    # pre-tokenizer isolates them and BPE returns whole-vocabulary words unmerged.
    data["added_tokens"] = [t for t in data["added_tokens"]
                            if t["content"] not in (IMAGE_TOKEN, IMAGE_ROW_TOKEN)]
    data["model"]["ignore_merges"] = True
    tok = Tokenizer.from_str(json.dumps(data))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS_TOKEN, eos_token=EOS_TOKEN,
                                   pad_token=PAD_TOKEN, unk_token=UNK_TOKEN)
    if num_bins:
        ensure_action_tokens(fast, base_vocab_size, num_bins)
    return fast


def ensure_action_tokens(tokenizer: PreTrainedTokenizerBase, token_offset: int,
                         num_bins: int = 256) -> None:
    """Make ``action_token(b)`` the token with id ``token_offset + b`` (adding them if needed)."""
    first = tokenizer.convert_tokens_to_ids(action_token(0))
    if first == token_offset:
        return
    if len(tokenizer) != token_offset:
        raise ValueError(f"cannot add action tokens at id {token_offset}: the tokenizer has "
                         f"{len(tokenizer)} tokens (expected exactly the backbone vocabulary)")
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [action_token(b) for b in range(num_bins)]},
        replace_extra_special_tokens=False)
    got = tokenizer.convert_tokens_to_ids([action_token(0), action_token(num_bins - 1)])
    if got != [token_offset, token_offset + num_bins - 1]:
        raise ValueError(f"action tokens landed at ids {got}, expected starting at {token_offset}")
