"""The organism tokenizer's vocabulary as plain data (no transformers: a recipe reads its size)."""

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = [PAD, BOS, EOS, UNK]
# Every character any organism task or format can emit; order fixes the ids.
ALPHABET = list("0123456789+-=[]() ") + list("abcdefghijklmnopqrstuvwxyz")
VOCAB = {tok: i for i, tok in enumerate(SPECIALS + ALPHABET)}
