"""Train a WordPiece vocabulary from texts: the rules of the Rust ``tokenizers`` WordPieceTrainer, in Python.

That trainer is a BPE trainer whose continuation pieces carry a "##" prefix: count the words, take
their characters as the alphabet, then repeatedly merge the most frequent pair of adjacent pieces
into a new piece until the vocabulary is full. Every rule is marked "Rule (...)" where it is
applied (docs/vocabulary.md lists them). Where the reference leaves an order to a hash map, and so
gives a different vocabulary from run to run, minibert fixes one: those places are marked "Canonical
order" (huggingface/tokenizers issue 1794, PR 2066). The result depends only on the texts and the
settings, never on PYTHONHASHSEED: no step iterates a set or a dict of strings in hash order.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Any

PREFIX = "##"  # WordPiece's continuing-subword prefix (WordPieceTrainer's default)


def train_new_tokenizer(tokenizer: Any, text_iterator: Iterable[Any], vocab_size: int, length: int | None = None,
                        new_special_tokens: list[str] | None = None, special_tokens_map: dict[str, str] | None = None,
                        **options: Any) -> Any:
    """BertTokenizer.train_new_from_iterator: a tokenizer like ``tokenizer`` (normalisation, special tokens,
    settings) with a vocabulary trained on ``text_iterator``. ``options`` go to train_wordpiece."""
    if isinstance(new_special_tokens, str):
        raise TypeError("new_special_tokens must be a list of strings, not one string")
    rename = dict(special_tokens_map or {})
    new = list(new_special_tokens or [])
    names = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
    # transformers gives the trainer the special tokens in the order of their ids in ``tokenizer``, then the new ones.
    specials = sorted({getattr(tokenizer, name) for name in names} | set(tokenizer.extra_special_tokens),
                      key=tokenizer.vocab.__getitem__)
    tokens = train_wordpiece(text_iterator, tokenizer.basic.tokenize, vocab_size,
                             [rename.get(token, token) for token in specials] + new, length=length, **options)
    return type(tokenizer)(
        tokens, tokenizer.do_lower_case, tokenizer.strip_accents, tokenizer.tokenize_chinese_chars,
        model_max_length=tokenizer.model_max_length, clean_up_tokenization_spaces=tokenizer.clean_up_tokenization_spaces,
        max_input_chars_per_word=tokenizer.wordpiece.max_input_chars_per_word,
        extra_special_tokens=[rename.get(token, token) for token in tokenizer.extra_special_tokens] + new,
        **{name: rename.get(getattr(tokenizer, name), getattr(tokenizer, name)) for name in names})


def train_wordpiece(texts: Iterable[Any], split_words: Callable[[str], list[str]], vocab_size: int,
                    special_tokens: list[str], *, length: int | None = None, min_frequency: int = 0,
                    show_progress: bool = True, limit_alphabet: int | None = None,
                    initial_alphabet: Iterable[str] = ()) -> list[str]:
    """Texts -> a WordPiece vocabulary, as tokens in id order: what BertTokenizer.train_new_from_iterator runs.

    ``split_words`` normalises a text and splits it into words (BasicTokenizer.tokenize); the other
    arguments are the Rust WordPieceTrainer's, with its defaults.
    """
    _check_settings(vocab_size, min_frequency, limit_alphabet)  # before reading what may be a long corpus
    for token in special_tokens:
        if not isinstance(token, str):
            raise TypeError(f"special tokens must be strings, got {type(token).__name__}")
    word_counts = count_words(texts, split_words, length, show_progress)
    return train_vocabulary(word_counts, vocab_size, special_tokens, min_frequency, limit_alphabet,
                            initial_alphabet, show_progress)


def count_words(texts: Iterable[Any], split_words: Callable[[str], list[str]], length: int | None = None,
                show_progress: bool = False) -> dict[str, int]:
    """Texts (each a string, or a batch: a list of strings) -> {word: how often it occurs}.

    Rule (word counting): each text is normalised and split into words exactly as the tokenizer will
    later split it (``split_words``: BasicTokenizer.tokenize), and the words are counted.
    """
    if isinstance(texts, str) or not isinstance(texts, Iterable):
        raise TypeError("text_iterator must be an iterable of texts (a list of strings, say), got "
                        + ("a single string" if isinstance(texts, str) else type(texts).__name__))
    counts: dict[str, int] = {}
    texts_seen = 0
    for item in _progress(texts, show_progress, "Count words", length):
        # The reference takes each item as one text or as a batch of texts.
        batch = (item,) if isinstance(item, str) else item
        if not isinstance(batch, Iterable):
            raise TypeError(f"text_iterator must yield strings (or lists of strings), got {type(item).__name__}")
        for text in batch:
            if not isinstance(text, str):
                raise TypeError(f"text_iterator must yield strings (or lists of strings), got {type(text).__name__}")
            texts_seen += 1
            for word in split_words(text):
                counts[word] = counts.get(word, 0) + 1
    if not counts:
        raise ValueError("text_iterator gave no words to learn from" if texts_seen else "text_iterator is empty")
    return counts


def train_vocabulary(word_counts: dict[str, int], vocab_size: int, special_tokens: list[str],
                     min_frequency: int = 0, limit_alphabet: int | None = None,
                     initial_alphabet: Iterable[str] = (), show_progress: bool = False) -> list[str]:
    """{word: count} -> the vocabulary, as tokens in id order (special tokens, alphabet, "##" pieces, merges)."""
    _check_settings(vocab_size, min_frequency, limit_alphabet)
    start = initial_vocabulary(word_counts, special_tokens, limit_alphabet, initial_alphabet)
    return merge_pairs(word_counts, start, vocab_size, min_frequency, show_progress)


def initial_vocabulary(word_counts: dict[str, int], special_tokens: list[str], limit_alphabet: int | None = None,
                       initial_alphabet: Iterable[str] = ()) -> list[str]:
    """The vocabulary before any merge: the special tokens, the alphabet, the "##" pieces."""
    # Rule (special tokens first): in the order given (transformers gives them in the order of their
    # ids in the tokenizer the method is called on); a repeated one counts once.
    vocabulary = list(dict.fromkeys(special_tokens))
    # Rule (alphabet): every character of the words, plus initial_alphabet, limited to limit_alphabet,
    # in code-point order (a character that is already a special token keeps that place).
    vocabulary += [char for char in sorted(alphabet(word_counts, limit_alphabet, initial_alphabet))
                   if char not in vocabulary]
    # Rule (continuation pieces): a character that is not the first of its word becomes "##" + char.
    # The reference numbers these as it first meets them while iterating a hash map of words, so in a
    # different order on every run, and the numbers break ties between equally frequent pairs.
    # Canonical order: by the number of distinct words the character continues, most first, then by
    # where it is first seen (words sorted, then its place in the word), then by code point. That is
    # the order the reference gives on average: a character in many words is met early, and characters
    # that go together are met in their order in the word. Plain code-point order would be as
    # deterministic but atypical, at the edge of the reference's runs (docs/vocabulary.md).
    known = set(vocabulary)
    carriers: dict[str, int] = {}  # character -> the number of distinct words it continues
    first_seen: dict[str, tuple[str, int]] = {}  # character -> (first word it continues, its place there)
    for word in sorted(word_counts):
        for place, char in enumerate(word[1:], 1):
            if char in known and char not in first_seen:
                first_seen[char] = (word, place)
        for char in set(word[1:]):
            if char in known:
                carriers[char] = carriers.get(char, 0) + 1
    order = sorted(carriers, key=lambda char: (-carriers[char], first_seen[char], char))
    return vocabulary + [PREFIX + char for char in order if PREFIX + char not in known]


def merge_pairs(word_counts: dict[str, int], vocabulary: list[str], vocab_size: int, min_frequency: int = 0,
                show_progress: bool = False) -> list[str]:
    """Grow ``vocabulary`` (from initial_vocabulary) by merges, as the reference's BPE loop does.

    Pair counts stay incremental, as in the reference: a merge changes only the words that hold the
    pair, and only the pairs next to it. The queue holds (-count, pair, sequence number, words where
    the pair was seen); an entry whose count has gone stale is pushed again with the current count.
    """
    vocabulary = list(vocabulary)
    ids = {token: index for index, token in enumerate(vocabulary)}

    def add(token: str) -> int:
        if token not in ids:  # a token already in the vocabulary keeps its id
            ids[token] = len(vocabulary)
            vocabulary.append(token)
        return ids[token]

    # Canonical order: words sorted (the reference iterates a hash map; only the ids above depended on it).
    words = sorted(word_counts)
    counts = [word_counts[word] for word in words]
    # Rule (characters outside the alphabet): they are dropped from the word, so their neighbours meet.
    pieces = [[ids[char if index == 0 else PREFIX + char] for index, char in enumerate(word) if char in ids]
              for word in words]
    pair_counts: dict[tuple[int, int], int] = {}
    where: dict[tuple[int, int], set[int]] = {}
    for index, word in enumerate(pieces):
        for pair in zip(word, word[1:]):
            pair_counts[pair] = pair_counts.get(pair, 0) + counts[index]
            where.setdefault(pair, set()).add(index)
    # Rule (merge priority): the highest count first; among equal counts, the pair with the smaller
    # ids (first id, then second), so ties go to older tokens. The sequence number only orders
    # entries that are equal in both, which the reference leaves to its heap.
    queue = [(-pair_counts[pair], pair[0], pair[1], number, positions)
             for number, (pair, positions) in enumerate(sorted(where.items()))]
    heapq.heapify(queue)
    sequence = len(queue)
    where = {}  # from here on: the words where each pair gained occurrences in the current merge
    bar = _progress(None, show_progress, "Compute merges", vocab_size)
    # Rule (vocab_size): stop once the vocabulary is full; the special tokens, the alphabet and the
    # "##" pieces are always there, so a vocab_size below their number gives just them.
    while len(vocabulary) < vocab_size and queue:
        negative_count, first, second, _, positions = heapq.heappop(queue)
        count = pair_counts[first, second]
        if -negative_count != count:  # stale: other merges changed this pair's count since it was queued
            heapq.heappush(queue, (-count, first, second, sequence, positions))
            sequence += 1
            continue
        # Rule (min_frequency, running out): stop at the first best pair below min_frequency, or when
        # no pair occurs any more.
        if count < 1 or count < min_frequency:
            break
        # Rule (new token): the two pieces joined, the right one without its "##"; a token that
        # already exists (made from another pair) keeps its id.
        right = vocabulary[second]
        new_id = add(vocabulary[first] + (right[len(PREFIX):] if right.startswith(PREFIX) else right))
        changed: dict[tuple[int, int], int] = {}
        for index in positions:  # any order: the changes only add up
            word = pieces[index]
            if first in word:
                _merge_word(word, first, second, new_id, index, counts[index], changed, where)
        for pair, change in changed.items():
            pair_counts[pair] = pair_counts.get(pair, 0) + change
        # Pairs that gained occurrences are queued with their new count and the words that gained them
        # (in the order they were met: ints hash alike in every process, so this order is fixed too).
        for pair in where:
            if pair_counts[pair] > 0:
                heapq.heappush(queue, (-pair_counts[pair], pair[0], pair[1], sequence, where[pair]))
                sequence += 1
        where.clear()
        if bar is not None:
            bar.update(len(vocabulary) - bar.n)
    if bar is not None:
        bar.close()
    return vocabulary


def alphabet(word_counts: dict[str, int], limit_alphabet: int | None, initial_alphabet: Iterable[str]) -> set[str]:
    """The characters the vocabulary starts from."""
    frequency: dict[str, int] = {}
    for word, count in word_counts.items():
        for char in word:
            frequency[char] = frequency.get(char, 0) + count
    # Rule (initial_alphabet): its characters count as infinitely frequent, so the limit keeps them
    # first. As in the reference's Python binding, a longer string gives its first character.
    for text in initial_alphabet:
        if not isinstance(text, str):
            raise TypeError(f"initial_alphabet must hold strings, got {type(text).__name__}")
        if text:
            frequency[text[0]] = float("inf")  # type: ignore[assignment]
    if limit_alphabet is None or len(frequency) <= limit_alphabet:
        return set(frequency)
    # Rule (limit_alphabet): keep the limit_alphabet most frequent characters. The reference drops the
    # least frequent ones after an unstable sort of a hash map, so among equally frequent characters
    # which one goes is left to chance. Canonical order: among equals, the lower code point stays.
    by_frequency = sorted(frequency, key=lambda char: (-frequency[char], char))
    return set(by_frequency[:limit_alphabet])


def _merge_word(word: list[int], first: int, second: int, new_id: int, index: int, count: int,
                changed: dict[tuple[int, int], int], where: dict[tuple[int, int], set[int]]) -> None:
    """Merge every (first, second) in one word, left to right, and record how its pairs change.

    The pair being merged is not counted down (as in the reference), so a later queue entry for
    it can still merge it in words where it formed again.
    """
    position = 0
    while position < len(word) - 1:
        if word[position] == first and word[position + 1] == second:
            if position > 0:
                _change(changed, where, (word[position - 1], first), -count, index)
                _change(changed, where, (word[position - 1], new_id), count, index)
            word[position:position + 2] = [new_id]
            if position < len(word) - 1:
                _change(changed, where, (second, word[position + 1]), -count, index)
                _change(changed, where, (new_id, word[position + 1]), count, index)
        position += 1


def _change(changed: dict[tuple[int, int], int], where: dict[tuple[int, int], set[int]], pair: tuple[int, int],
            change: int, index: int) -> None:
    changed[pair] = changed.get(pair, 0) + change
    if change > 0:
        where.setdefault(pair, set()).add(index)


def _check_settings(vocab_size: Any, min_frequency: Any, limit_alphabet: Any) -> None:
    for name, value, smallest in (("vocab_size", vocab_size, 1), ("min_frequency", min_frequency, 0),
                                  ("limit_alphabet", limit_alphabet, 0)):
        if value is None and name == "limit_alphabet":
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < smallest:
            raise ValueError(f"{name} must be at least {smallest}, got {value}")


def _progress(items: Iterable[Any] | None, show: bool, description: str, total: int | None) -> Any:
    """A tqdm progress bar over ``items`` (or a bar to update by hand), or the items themselves."""
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=description, total=total, unit=" texts" if items is not None else " tokens")
