"""A one-character-per-token tokenizer for the tiny models tests build (fast, offline, no files)."""

from __future__ import annotations


def char_tokenizer(chars, words=()):
    """(PreTrainedTokenizerFast, vocab): ids 0-3 are <pad>, <s>, </s>, <unk>, then ``words`` (whole
    tokens), then every character of ``chars``; text is split into single characters."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    for c in [*words, *chars]:
        vocab.setdefault(c, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>"), vocab
