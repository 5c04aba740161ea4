"""minibert: BERT from scratch in plain PyTorch."""
