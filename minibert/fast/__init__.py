"""The fast paths: the same model, computed faster. Each is held against the eager path by a test.

- ``unpadded.py``: a padded batch runs on its real tokens only (``PackedSequences``); attention per
  equal-length group on the CPU, or
- ``varlen.py``: one variable-length flash-attention call per layer on a GPU.
- ``quantize.py``: opt-in int8 linear layers for CPU inference (``minibert.quantize``).
- ``prepack.py``: opt-in oneDNN-prepacked float32 linear layers for CPU inference (``minibert.prepack``).
- ``conversion.py``: what quantize and prepack share (swapping layers, fusing q/k/v and GELU).

This file imports nothing: the model imports single modules from this folder.
"""
