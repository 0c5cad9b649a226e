"""A character-level tokenizer for the organism, as a standard PreTrainedTokenizerFast.

One token per character over a fixed alphabet, built on a `tokenizers` WordLevel
model so that it saves and loads with AutoTokenizer like any checkpoint's. It
adds no special tokens itself: prompts carry their own ``<s>`` marker, which
keeps lm-eval's HF model, trl and our own evaluation tokenising identically.
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from rankedit.organism.vocab import ALPHABET, BOS, EOS, PAD, SPECIALS, UNK, VOCAB  # noqa: F401 (re-exported)



def build_tokenizer() -> PreTrainedTokenizerFast:
    """The organism tokenizer: ids are fixed by VOCAB, so it is identical on every build."""
    tok = Tokenizer(models.WordLevel(vocab=dict(VOCAB), unk_token=UNK))
    # Split into single characters; special tokens are matched before this runs.
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()  # characters join back without spaces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        clean_up_tokenization_spaces=False, model_max_length=64,
        padding_side="left",  # decoder-only generation pads on the left
    )
    return fast
