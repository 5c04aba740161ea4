"""Loading and saving: checkpoints from the Hugging Face hub or a folder, under transformers' names.

- ``pretrained.py``: ``PreTrainedBert``, the base class of every model, with ``from_pretrained`` and
  ``save_pretrained``; models are built on the meta device and the checkpoint's tensors put in place.
- ``weights.py``: the name table (checkpoint name <-> minibert name) and the safetensors files.
- ``config_file.py``: ``config.json`` in and out, for ``BertConfig``.
- ``hub.py``: finding a checkpoint's files (a local folder, or the hub through huggingface_hub).
- ``atomic.py``: writing a folder of files all or nothing.
- ``dtypes.py``: dtype names as users write them ("bf16").
- ``auto.py``: the ``AutoModel*`` classes (they import the heads, so nothing here imports them).

This file imports nothing: ``config.py`` and ``model.py`` import single modules from this folder.
"""
