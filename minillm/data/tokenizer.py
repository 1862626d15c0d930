"""A T5-style subword tokenizer built on the Hugging Face `tokenizers` library.

T5 turns text into ids with a SentencePiece *Unigram* model: every word is split into the most
probable sequence of pieces from a fixed vocabulary, and a space is written as the visible
character "▁" glued to the start of the next piece ("the cat" -> ["▁the", "▁cat"]). This module
trains such a model (or a BPE one, for comparison) on an iterator of texts, after cutting words
apart from their punctuation ("day." -> ["▁day", "."]) so that a small vocabulary keeps one id
per word, and fixes the id layout T5 relies on:

    id 0            <pad>          (also the decoder's start token)
    id 1            </s>           (end of sequence, appended to every encoded text)
    id 2            <unk>
    ...             learned pieces
    id V-N .. V-1   <extra_id_{N-1}> .. <extra_id_0>   sentinels for span corruption

Note the sentinels run *backwards*: `<extra_id_0>` is the very last id, as in T5, so
`sentinel_id(n) == vocab_size - 1 - n`.

`Tokenizer` also loads any Hugging Face T5 `tokenizer.json`, so a learner can swap in the real
T5 vocabulary without changing code.
"""
from __future__ import annotations

import json
import os
import string
from typing import Iterable, Sequence

import numpy as np
from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as _HFTokenizer

from ..files import MAX_TOKENIZER_BYTES, atomic_write, atomic_write_text, make_folder, read_input

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, EOS, UNK]  # the trainers give these ids 0, 1, 2 in this order
METASPACE = "▁"  # U+2581, SentencePiece's visible space
# A pre-token is an optional "▁" and then a run of letters, a run of digits or a run of other
# symbols; a lone "▁" (a space before nothing) stays a piece of its own.
PRE_TOKEN = r"▁?\p{L}+|▁?\p{N}+|▁?[^\s\p{L}\p{N}▁]+|▁"


def sentinel_token(n: int) -> str:
    """The text of the n-th sentinel, e.g. `sentinel_token(0) == "<extra_id_0>"`."""
    return f"<extra_id_{n}>"


def _empty_t5_style(model) -> _HFTokenizer:
    """A `tokenizers.Tokenizer` wired like T5's: normalize, split on spaces into "▁" words."""
    tok = _HFTokenizer(model)
    # T5's SentencePiece model maps every run of whitespace (including newlines) to one space,
    # so "a\n\nb" and "a b" get the same ids. We do the same; prompts may use "\n" freely.
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
    )
    # Then cut each "▁word" apart from the punctuation touching it, as GPT-2's pre-tokenizer does
    # (Radford et al. 2019, section 2.2). BPE merges only inside a pre-token, so without the cut a
    # small vocabulary spends its merges on "▁Saturday." and "day,\"" and the same word becomes
    # different ids before a full stop, a comma or a space: a model must then learn that they mean
    # the same. Each piece keeps its "▁", so decoding still restores every space. (T5's own
    # 32k-piece vocabulary is large enough to learn "▁Saturday" and "." without this cut; a file
    # loaded with from_file keeps the pre-tokenizer written in it.)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always"),
        pre_tokenizers.Split(Regex(PRE_TOKEN), behavior="isolated"),
    ])
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always")
    return tok


class Tokenizer:
    """Text <-> ids with T5's conventions (pad 0, eos 1, unk 2, sentinels at the end).

    Build one with `Tokenizer.train(...)`, `Tokenizer.from_file(path)` or
    `Tokenizer.from_pretrained(directory)`.
    """

    pad_token_id = 0
    eos_token_id = 1
    unk_token_id = 2

    def __init__(self, hf_tokenizer: _HFTokenizer):
        """Wrap a `tokenizers.Tokenizer` whose special tokens follow T5's layout."""
        self._tok = hf_tokenizer
        for token, expected in zip(SPECIAL_TOKENS, (0, 1, 2)):
            got = hf_tokenizer.token_to_id(token)
            if got != expected:
                raise ValueError(f"expected {token!r} to have id {expected}, found {got}")
        # Count sentinels: <extra_id_0>, <extra_id_1>, ... until one is missing.
        n = 0
        while hf_tokenizer.token_to_id(sentinel_token(n)) is not None:
            n += 1
        self.num_sentinels = n
        for i in range(n):
            if hf_tokenizer.token_to_id(sentinel_token(i)) != self.vocab_size - 1 - i:
                raise ValueError(f"{sentinel_token(i)} must have id vocab_size - 1 - {i}")

    # ---------------------------------------------------------------- construction
    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 2000,
        model: str = "bpe",
        num_sentinels: int = 100,
    ) -> "Tokenizer":
        """Learn a vocabulary of `vocab_size` ids (sentinels included) from `texts`.

        Args:
            texts: any iterable of strings (a list, a generator over a file, ...).
            vocab_size: total size including <pad>, </s>, <unk> and the sentinels. The learned
                part may come out smaller when the corpus has few distinct words.
            model: "bpe" (GPT's family, the default) or "unigram" (SentencePiece's model, which
                T5 uses). On a tiny, repetitive corpus like the built-in tasks, the `tokenizers`
                Unigram trainer keeps frequent words in pieces ("▁w" "ill") and makes sequences
                about twice as long as BPE's, so BPE is the better choice there. Both produce
                the same id layout, and loading T5's real Unigram tokenizer.json works either way.
            num_sentinels: how many <extra_id_N> tokens to append (T5 uses 100).
        """
        n_learned = vocab_size - num_sentinels
        if n_learned <= len(SPECIAL_TOKENS):
            raise ValueError(f"vocab_size={vocab_size} leaves no room after {num_sentinels} sentinels")
        # Seed the alphabet with printable ASCII so that no ASCII character is ever <unk>,
        # even one the training texts happen not to contain.
        alphabet = sorted(set(string.ascii_letters + string.digits + string.punctuation))
        if model == "unigram":
            tok = _empty_t5_style(models.Unigram())
            trainer = trainers.UnigramTrainer(
                vocab_size=n_learned, special_tokens=SPECIAL_TOKENS, unk_token=UNK,
                initial_alphabet=alphabet, show_progress=False,
            )
        elif model == "bpe":
            tok = _empty_t5_style(models.BPE(unk_token=UNK))
            trainer = trainers.BpeTrainer(
                vocab_size=n_learned, special_tokens=SPECIAL_TOKENS,
                initial_alphabet=alphabet, show_progress=False,
            )
        else:
            raise ValueError(f"model must be 'unigram' or 'bpe', got {model!r}")
        tok.train_from_iterator(texts, trainer)
        # Added in reverse so that <extra_id_0> lands on the last id, as in T5.
        tok.add_special_tokens([sentinel_token(i) for i in reversed(range(num_sentinels))])
        # Same post-processor as Hugging Face's T5 tokenizer.json: "$A </s>". Our own encode()
        # appends </s> itself (to truncate correctly), but other readers of the file rely on it.
        tok.post_processor = processors.TemplateProcessing(
            single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, 1)]
        )
        return cls(tok)

    @classmethod
    def from_file(cls, path: str) -> "Tokenizer":
        """Load a `tokenizer.json` (ours or a Hugging Face T5 one).

        Raises:
            FileNotFoundError / ValueError: naming the file, when it is missing, is not a
                tokenizer the `tokenizers` library can read, or lacks T5's special ids.
        """
        path = str(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} does not exist (expected a tokenizer.json)")
        data = read_input(path, MAX_TOKENIZER_BYTES, "tokenizer.json")  # a regular file, bounded
        try:
            hf_tokenizer = _HFTokenizer.from_str(data.decode("utf-8"))
        except Exception as err:  # the Rust library raises a bare Exception with serde's message
            raise ValueError(f"{path}: not a valid tokenizer.json ({err})") from None
        try:
            return cls(hf_tokenizer)
        except ValueError as err:
            raise ValueError(f"{path}: not a T5-style tokenizer: {err}") from None

    def check_fits(self, vocab_size: int, source: str = "the model") -> None:
        """Raise a ValueError if this tokenizer makes ids that ``source``'s embedding of ``vocab_size`` rows lacks."""
        if self.vocab_size > vocab_size:
            raise ValueError(f"the tokenizer has {self.vocab_size} ids but {source} has vocab_size "
                             f"{vocab_size}: ids from {vocab_size} on would index past its embedding")

    @classmethod
    def from_pretrained(cls, directory: str) -> "Tokenizer":
        """Load `directory/tokenizer.json`, like `transformers.AutoTokenizer.from_pretrained`."""
        path = os.path.join(directory, "tokenizer.json") if os.path.isdir(directory) else directory
        return cls.from_file(path)

    def save(self, path: str) -> str:
        """Save to `path` (a .json file) or to `path/tokenizer.json`; returns the file written.

        Saving to a directory also writes a small `tokenizer_config.json` so that
        `transformers.T5TokenizerFast.from_pretrained(path)` recognises the special tokens.
        """
        path = str(path)
        if path.endswith(".json"):
            make_folder(os.path.dirname(path) or ".")
            atomic_write(path, self._tok.save)  # a link at path is replaced, never written through
            return path
        make_folder(path)
        file = os.path.join(path, "tokenizer.json")
        atomic_write(file, self._tok.save)
        config = {"tokenizer_class": "T5Tokenizer", "pad_token": PAD, "eos_token": EOS,
                  "unk_token": UNK, "extra_ids": self.num_sentinels}
        atomic_write_text(os.path.join(path, "tokenizer_config.json"), json.dumps(config, indent=2))
        return file

    save_pretrained = save  # the Hugging Face name

    # ---------------------------------------------------------------- vocabulary
    @property
    def vocab_size(self) -> int:
        """Number of ids, sentinels included (the size of the model's embedding table)."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def sentinel_id(self, n: int) -> int:
        """Id of `<extra_id_n>`; sentinel 0 is the last id of the vocabulary."""
        if not 0 <= n < self.num_sentinels:
            raise IndexError(f"sentinel {n} out of range (this tokenizer has {self.num_sentinels})")
        return self.vocab_size - 1 - n

    def token_to_id(self, token: str) -> int | None:
        """Id of a vocabulary entry such as "▁cat", or None if it is not in the vocabulary."""
        return self._tok.token_to_id(token)

    def id_to_token(self, id: int) -> str | None:
        """The vocabulary entry behind an id (pieces show "▁" where a space was)."""
        return self._tok.id_to_token(id)

    def tokenize(self, text: str) -> list[str]:
        """The pieces of `text`, without </s>; handy for seeing what the model sees."""
        return self._tok.encode(text, add_special_tokens=False).tokens

    # ---------------------------------------------------------------- encoding
    def encode(self, text: str, add_eos: bool = True) -> list[int]:
        """Ids of one text, with </s> appended unless `add_eos=False`."""
        ids = self._tok.encode(text, add_special_tokens=False).ids
        return ids + [self.eos_token_id] if add_eos else ids

    def batch_encode(
        self,
        texts: Sequence[str],
        max_length: int | None = None,
        padding: bool | str = True,
        truncation: bool = True,
        return_numpy: bool = True,
        add_eos: bool = True,
    ) -> dict:
        """Encode many texts at once, padded with <pad> into a rectangle.

        Args:
            texts: the strings to encode.
            max_length: longest allowed sequence, </s> included. Longer texts are cut so that
                they still *end* with </s>, as Hugging Face's T5 tokenizer does.
            padding: True pads to the longest sequence in the batch, "max_length" pads to
                `max_length`, False returns ragged lists.
            truncation: if False, a text longer than `max_length` raises instead of being cut.
            return_numpy: int64 arrays (True) or lists of lists (False).

        Returns:
            {"input_ids", "attention_mask", "num_truncated"}; attention_mask is 1 on real tokens
            and 0 on padding, num_truncated counts the texts that were cut (never silently).
        """
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=False)
        eos = [self.eos_token_id] if add_eos else []
        rows, num_truncated = [], 0
        for text, enc in zip(texts, encodings):
            ids = enc.ids + eos
            if max_length is not None and len(ids) > max_length:
                if not truncation:
                    raise ValueError(f"text has {len(ids)} tokens > max_length={max_length}: {text[:60]!r}")
                ids = ids[: max_length - len(eos)] + eos
                num_truncated += 1
            rows.append(ids)
        if padding == "max_length":
            if max_length is None:
                raise ValueError("padding='max_length' needs max_length")
            width = max_length
        elif padding:
            width = max((len(r) for r in rows), default=0)
        else:
            masks = [[1] * len(r) for r in rows]
            return {"input_ids": rows, "attention_mask": masks, "num_truncated": num_truncated}
        input_ids = [r + [self.pad_token_id] * (width - len(r)) for r in rows]
        mask = [[1] * len(r) + [0] * (width - len(r)) for r in rows]
        if return_numpy:
            input_ids = np.array(input_ids, dtype=np.int64).reshape(len(rows), width)
            mask = np.array(mask, dtype=np.int64).reshape(len(rows), width)
        return {"input_ids": input_ids, "attention_mask": mask, "num_truncated": num_truncated}

    __call__ = batch_encode

    # ---------------------------------------------------------------- decoding
    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of a sequence of ids; by default drops <pad>, </s>, <unk> and sentinels.

        Accepts a list or a 1-D array, and ignores the label padding value -100.
        """
        ids = [int(i) for i in np.asarray(ids).reshape(-1) if int(i) >= 0]
        return self._tok.decode(ids, skip_special_tokens=skip_special_tokens)

    def batch_decode(self, batch: Iterable[Iterable[int]], skip_special_tokens: bool = True) -> list[str]:
        """`decode` applied to each row of a 2-D array or list of lists."""
        return [self.decode(row, skip_special_tokens) for row in batch]

    def __repr__(self) -> str:
        kind = type(self._tok.model).__name__
        return f"Tokenizer({kind}, vocab_size={self.vocab_size}, num_sentinels={self.num_sentinels})"
