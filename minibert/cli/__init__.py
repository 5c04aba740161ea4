"""The command-line tools: ``python -m minibert`` or ``minibert`` (main.py parses the arguments).

- ``parity.py`` and ``parity_report.py``: layer by layer, how far minibert is from transformers.
- ``inspection.py``: every tensor of a checkpoint and where the name table puts it.
- ``attention_map.py``: one head's attention probabilities as a heatmap.
- ``encode.py``: texts in, vectors out.
- ``text_table.py``: the fixed-width tables they print.
- ``arguments.py``: the options' checks (argparse types; the device, before loading).
"""

from .main import COURSE_SENTENCES, COURSE_IDS, build_parser, main

__all__ = ["COURSE_SENTENCES", "COURSE_IDS", "build_parser", "main"]
