"""BERT's WordPiece tokenizer, from scratch: text in, model inputs out.

- ``basic.py``: normalise the text and split it into words (``BasicTokenizer``).
- ``wordpiece.py``: cover each word with the longest vocabulary pieces (``WordPiece``).
- ``bert_tokenizer.py``: ``BertTokenizer``, the two stages under transformers' names, with
  loading, saving and decoding.
- ``batch.py``: from texts to a model's batch: special tokens, pairs, truncation, padding, tensors.
- ``trainer.py``: learn a new vocabulary from texts (``BertTokenizer.train_new_from_iterator``).
- ``unicode_tables.py`` and the generated ``unicode_data.py``: the character tables.
"""

from .batch import BatchEncoding
from .bert_tokenizer import BasicTokenizer, BertTokenizer, WordPiece

__all__ = ["BasicTokenizer", "BatchEncoding", "BertTokenizer", "WordPiece"]
