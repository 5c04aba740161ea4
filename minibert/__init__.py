"""minibert: BERT from scratch in plain PyTorch, exact against transformers."""

from .config import BertConfig
from .model import BertModel, BertModelOutput

__all__ = ["BertConfig", "BertModel", "BertModelOutput"]
