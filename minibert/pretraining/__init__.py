"""Pretraining from scratch: the corpus, masked-LM batches, and the training loop.

- ``corpus.py``: paragraphs of the Python standard library's docstrings, with a held-out split.

This file imports nothing; import the modules you need.
"""
