"""Training data for fine-tuning the language model: pasted text or an uploaded file, checked, tokenised,
cut into blocks, with a held-out share kept aside.

Two presets: "style" trains on every token of raw text cut to the block length ("write in this voice");
"format" trains on chat pairs (``{"messages": [...]}`` per JSONL line) and only on the assistant's last reply
("answer in this format"). Every problem is a ValueError naming the line or the limit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PRESETS = ("style", "format")
FILE_TYPES = (".txt", ".md", ".jsonl")
MIN_TOKENS = 128  # below this there is no held-out share worth measuring
MIN_EXAMPLES = 4
IGNORE = -100  # label of a token that is read but not trained on (the prompt of a chat pair)
_MAX_REPORTED = 5  # malformed JSONL lines named in one message


@dataclass(frozen=True)
class Example:
    ids: tuple[int, ...]
    labels: tuple[int, ...]  # IGNORE where the loss does not count

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels[1:] if label != IGNORE)


@dataclass(frozen=True)
class TextDataset:
    preset: str
    train: tuple[Example, ...]
    held_out: tuple[Example, ...]
    sha256: str  # of the text as given: the adapter's card records what it learned from
    characters: int
    warnings: tuple[str, ...] = ()

    @property
    def train_tokens(self) -> int:
        return sum(e.trained_tokens for e in self.train)

    @property
    def train_read_tokens(self) -> int:
        """Tokens the model reads per epoch (chat pairs: prompts too), which sets the time."""
        return sum(len(e.ids) for e in self.train)

    @property
    def held_out_tokens(self) -> int:
        return sum(e.trained_tokens for e in self.held_out)

    @property
    def source_ids(self) -> list[np.ndarray]:
        """The trained tokens of each training example, kept apart (no run spans two blocks), for the
        memorisation meter."""
        return [
            np.array([i for i, label in zip(e.ids, e.labels, strict=True) if label != IGNORE], dtype=np.int64)
            for e in self.train
        ]

    def batches(self, batch_size: int, epoch: int, seed: int) -> list[list[Example]]:
        """The training share shuffled for ``epoch`` (reproducible from the seed), in batches."""
        order = np.random.default_rng(seed + epoch).permutation(len(self.train))
        return [[self.train[i] for i in order[k : k + batch_size]] for k in range(0, len(order), batch_size)]


def read_upload(path: str | Path, max_bytes: int) -> str:
    """The text of an uploaded ``.txt``/``.md``/``.jsonl`` file, refused before reading when too large."""
    path = Path(path)
    name = path.name
    if path.suffix.lower() not in FILE_TYPES:
        raise ValueError(f"{name}: use a {', '.join(FILE_TYPES)} file")
    if not path.is_file():
        raise ValueError(f"{name} cannot be read (it was not uploaded, or is gone)")
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{name} is {size / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB")
    raw = path.read_bytes()
    if b"\x00" in raw[:65536]:
        raise ValueError(f"{name} is not text (it holds binary data)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{name} is not UTF-8 text (byte {err.start} cannot be read)") from None


def parse_chat_pairs(text: str) -> list[list[dict[str, str]]]:
    """One conversation per non-empty line: ``{"messages": [{"role": ..., "content": ...}, ...]}`` ending in
    the assistant's reply. Bad lines are reported by number."""
    conversations, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(f"line {number}: not JSON ({err.msg})")
            continue
        messages = record.get("messages") if isinstance(record, dict) else None
        if not isinstance(messages, list) or not messages:
            problems.append(f'line {number}: needs {{"messages": [...]}}')
            continue
        if not all(
            isinstance(m, dict)
            and m.get("role") in ("system", "user", "assistant")
            and isinstance(m.get("content"), str)
            for m in messages
        ):
            problems.append(
                f"line {number}: each message needs a role (system/user/assistant) and text content"
            )
            continue
        if messages[-1]["role"] != "assistant" or len(messages) < 2:
            problems.append(f"line {number}: must end with the assistant's reply to a user message")
            continue
        conversations.append(messages)
    if problems:
        more = f" (and {len(problems) - _MAX_REPORTED} more)" if len(problems) > _MAX_REPORTED else ""
        raise ValueError("chat pairs: " + "; ".join(problems[:_MAX_REPORTED]) + more)
    return conversations


def style_examples(ids: Sequence[int], block: int) -> list[Example]:
    """Raw text's tokens in blocks of ``block``; a short tail is kept if it is at least a quarter block."""
    blocks = [tuple(ids[k : k + block]) for k in range(0, len(ids), block)]
    if len(blocks) > 1 and len(blocks[-1]) < block // 4:
        blocks.pop()
    return [Example(b, b) for b in blocks]


def chat_examples(
    conversations: list[list[dict[str, str]]],
    render: Callable[[list[dict[str, str]], bool], list[int]],
    block: int,
) -> tuple[list[Example], int]:
    """Each conversation rendered with the model's chat template; only the last reply is trained on.
    Returns the examples and how many were cut to ``block`` tokens."""
    examples, cut = [], 0
    for messages in conversations:
        prompt = render(messages[:-1], True)
        full = render(messages, False)
        if full[: len(prompt)] != prompt:  # a template that rewrites earlier turns: train on the whole text
            prompt = []
        if len(full) > block:
            cut += 1
            full = full[:block]
        labels = tuple(IGNORE if i < len(prompt) else t for i, t in enumerate(full))
        examples.append(Example(tuple(full), labels))
    return examples, cut


def split_held_out(examples: list[Example], fraction: float) -> tuple[list[Example], list[Example]]:
    """Every k-th example aside (spread through the text, not its last pages), at least one each side."""
    count = min(len(examples) - 1, max(1, round(len(examples) * fraction)))
    picks = set(np.linspace(0, len(examples) - 1, count + 2)[1:-1].round().astype(int).tolist())
    held = [e for i, e in enumerate(examples) if i in picks]
    return [e for i, e in enumerate(examples) if i not in picks], held


def build_dataset(
    text: str,
    preset: str,
    tokenize: Callable[[str], list[int]],
    render_chat: Callable[[list[dict[str, str]], bool], list[int]],
    block: int,
    held_out: float,
    max_tokens: int,
) -> TextDataset:
    """Check, tokenise and split ``text`` for ``preset``; ValueErrors say what to change."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}")
    stripped = text.strip()
    if not stripped:
        raise ValueError("there is no training text: paste some, or upload a .txt, .md or .jsonl file")
    warnings = []
    if preset == "style":
        if len(stripped.splitlines()) < 2 and len(stripped) < 400:
            raise ValueError(
                "one line is too little to learn a style from: paste a page or more (a few thousand words "
                "tune best)"
            )
        ids = tokenize(stripped)
        if len(ids) < MIN_TOKENS:
            raise ValueError(
                f"the text is {len(ids)} tokens; tuning needs at least {MIN_TOKENS} (about 100 words)"
            )
        if len(ids) > max_tokens:
            warnings.append(f"the text is {len(ids):,} tokens; training uses the first {max_tokens:,}")
            ids = ids[:max_tokens]
        block = min(block, len(ids) // 4)  # at least four blocks, so one can be held out
        examples = style_examples(ids, block)
    else:
        conversations = parse_chat_pairs(stripped)
        if len(conversations) < MIN_EXAMPLES:
            raise ValueError(
                f"{len(conversations)} chat pair(s); the format preset needs at least {MIN_EXAMPLES} "
                '(one {"messages": [...]} per line)'
            )
        examples, cut = chat_examples(conversations, render_chat, block)
        if cut:
            warnings.append(f"{cut} conversation(s) longer than {block} tokens were cut")
        empty = sum(1 for e in examples if e.trained_tokens == 0)
        if empty:  # a prompt that fills the whole block leaves no reply to learn
            warnings.append(f"{empty} conversation(s) had no room for the reply in {block} tokens: left out")
            examples = [e for e in examples if e.trained_tokens > 0]
            if len(examples) < MIN_EXAMPLES:
                raise ValueError(
                    f"only {len(examples)} chat pair(s) fit in {block} tokens: raise the block length"
                )
        total = sum(len(e.ids) for e in examples)
        if total > max_tokens:
            raise ValueError(f"the chat pairs are {total:,} tokens; the limit is {max_tokens:,}")
    train, held = split_held_out(examples, held_out)
    return TextDataset(
        preset=preset,
        train=tuple(train),
        held_out=tuple(held),
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        characters=len(text),
        warnings=tuple(warnings),
    )


@dataclass(frozen=True)
class Copied:
    """The longest run of tokens a reply shares with the training text, and that text."""

    tokens: int
    text: str


def longest_copied_run(
    reply: Sequence[int], source: Sequence[np.ndarray], detokenize: Callable[[list[int]], str]
) -> Copied:
    """The memorisation meter: the longest contiguous token sequence of ``reply`` that also occurs in one of
    the training token runs ``source`` (binary search on the length over hashed n-grams of the runs)."""
    reply = np.asarray(list(reply), dtype=np.int64)
    runs = [np.asarray(run, dtype=np.int64) for run in source]
    if len(reply) == 0 or not any(len(run) for run in runs):
        return Copied(0, "")
    windows = np.lib.stride_tricks.sliding_window_view

    def found(length: int) -> int | None:
        if length > len(reply):
            return None
        grams = {bytes(w) for run in runs if len(run) >= length for w in windows(run, length)}
        for start, window in enumerate(windows(reply, length)):
            if bytes(window) in grams:
                return start
        return None

    where = found(1)
    if where is None:
        return Copied(0, "")
    low, high = 1, len(reply)  # low is always found; high + 1 never is
    while low < high:
        middle = (low + high + 1) // 2
        start = found(middle)
        if start is None:
            high = middle - 1
        else:
            low, where = middle, start
    return Copied(low, detokenize(reply[where : where + low].tolist()))
