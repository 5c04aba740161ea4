"""The pretraining step in two CPU processes (gloo on 127.0.0.1, as torchrun would set up): each takes
half of the global batch, and after one step both hold the parameters that one process reaches by
stepping on the whole batch, and that one process reaches with two accumulation steps.

Why it can hold: every process collates the whole batch with the same seed, so each divides its
summed loss by the whole batch's number of masked tokens, and the gradients are then summed across
the processes (train_step). Tolerance: the additions run in another order (per half, then across
the halves), so 1e-6 absolute on parameters of size ~0.02-1 after one AdamW step with lr 1e-3.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from minibert import BertTokenizer, DataCollatorForLanguageModeling
from minibert.pretraining.step import Settings, build_model, collate, train_step

from conftest import free_port

WORLD = 2
SETTINGS = dict(layers=2, hidden=32, heads=4, seq_len=16, batch_size=8, lr=0.5)
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"word{index}" for index in range(40)]


def rows() -> list[list[int]]:
    """8 rows of different lengths (2 + 3..14 tokens): the processes' halves hold different numbers."""
    generator = torch.Generator().manual_seed(3)
    lengths = [14, 3, 9, 12, 5, 14, 7, 10]
    return [[2] + torch.randint(5, len(VOCAB), (length,), generator=generator).tolist() + [3] for length in lengths]


def one_step(directory: str, rank: int, world: int, accumulation: int = 1) -> dict[str, torch.Tensor]:
    settings = Settings(**SETTINGS, accumulation=accumulation, precision="fp32")
    tokenizer = BertTokenizer(os.path.join(directory, "vocab.txt"))
    torch.manual_seed(0)
    model = build_model(settings, len(tokenizer)).train()
    # Plain SGD: its step is linear in the gradient, so the processes' rounding stays at rounding's size.
    # AdamW's first step is lr * sign(gradient), which turns the noise of a near-zero gradient (the key
    # biases' is exactly 0: softmax ignores a constant per row) into a step of lr either way.
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr)
    batch = collate(DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.4), rows(), seed=0, step=0)
    train_step(model, optimizer, batch, settings, settings.lr, rank, world)
    return {name: parameter.detach().clone() for name, parameter in model.named_parameters()}


def worker(rank: int, port: int, directory: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        torch.save(one_step(directory, rank, WORLD), os.path.join(directory, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch built without gloo")
def test_two_processes_step_as_one_process_on_the_whole_batch(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD)]
    alone = one_step(str(tmp_path), 0, 1)
    accumulated = one_step(str(tmp_path), 0, 1, accumulation=2)
    torch.manual_seed(0)
    initial = build_model(Settings(**SETTINGS), len(VOCAB)).state_dict()
    moved = 0
    for name, parameter in alone.items():
        for rank, result in enumerate(results):
            torch.testing.assert_close(result[name], parameter, rtol=0, atol=1e-6, msg=lambda m: f"rank {rank}, {name}: {m}")
        torch.testing.assert_close(accumulated[name], parameter, rtol=0, atol=1e-6, msg=lambda m: f"accumulated, {name}: {m}")
        assert torch.equal(results[0][name], results[1][name]), name  # one gradient, applied alike
        moved += int(not torch.equal(parameter, initial[name]))
    assert moved > len(alone) // 2  # the step changed the model (a test of nothing otherwise)
