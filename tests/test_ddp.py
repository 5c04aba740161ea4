"""Data-parallel training with torch.distributed: two CPU processes (gloo on 127.0.0.1), each given
half of a batch, end one DDP step holding the gradients that one process computes on the whole batch.

Tolerance: each process sums over its own half and DDP averages the two halves, so the additions run
in another order than in one process: 1e-5 relative, with a floor of 1e-6 of the largest gradient.
(A masked-LM loss averages over the masked tokens of each half, which differ in number: the halves'
mean is then not the whole batch's mean, so sequence classification is the case tested.)
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from minibert import BertConfig, BertForSequenceClassification
from conftest import free_port

WORLD = 2
CONFIG = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
              max_position_embeddings=64, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def build_model() -> BertForSequenceClassification:
    """The same random model in every process (seeded); dropout off so the halves are deterministic."""
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(**CONFIG)).train()


def whole_batch() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """8 padded rows with labels; rows 0-3 go to process 0, rows 4-7 to process 1."""
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1, CONFIG["vocab_size"], (8, 12), generator=generator)
    lengths = torch.tensor([12, 5, 9, 12, 3, 12, 7, 10])
    attention_mask = (torch.arange(12)[None] < lengths[:, None]).long()
    labels = torch.randint(0, CONFIG["num_labels"], (8,), generator=generator)
    return {"input_ids": input_ids.masked_fill(attention_mask == 0, 0), "attention_mask": attention_mask}, labels


def worker(rank: int, port: int, directory: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        model = DistributedDataParallel(build_model())
        inputs, labels = whole_batch()
        share = slice(rank * 4, rank * 4 + 4)
        loss = model(**{name: tensor[share] for name, tensor in inputs.items()}, labels=labels[share]).loss
        loss.backward()  # DDP all-reduces (averages) the gradients here
        gradients = {name: parameter.grad for name, parameter in model.module.named_parameters()}
        torch.optim.SGD(model.parameters(), lr=0.1).step()
        parameters = {name: parameter.detach() for name, parameter in model.module.named_parameters()}
        torch.save({"gradients": gradients, "parameters": parameters}, os.path.join(directory, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch built without gloo")
def test_two_processes_average_to_the_whole_batch_gradient(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD)]

    model = build_model()
    inputs, labels = whole_batch()
    model(**inputs, labels=labels).loss.backward()
    scale = max(float(parameter.grad.abs().max()) for parameter in model.parameters())
    for name, parameter in model.named_parameters():
        for rank, result in enumerate(results):
            torch.testing.assert_close(result["gradients"][name], parameter.grad, rtol=1e-5, atol=1e-6 * scale,
                                       msg=lambda message: f"rank {rank}, grad of {name}: {message}")
        # After the step both processes hold the same weights (bit for bit): they applied one gradient.
        assert torch.equal(results[0]["parameters"][name], results[1]["parameters"][name]), name
