"""KD fine-tune of an extracted subnet: the loss and the loop on a few real Fashion-MNIST batches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hwnas.data import batches, load_dataset
from hwnas.errors import HwnasError
from hwnas.export.finetune import FinetuneConfig, finetune_kd, kd_loss
from hwnas.space import get_space, largest, smallest
from hwnas.supernet import Supernet, extract


def test_kd_loss_is_ce_without_teacher_weight_and_zero_kl_for_equal_logits() -> None:
    logits = torch.randn(8, 10, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(8) % 10
    ce = torch.nn.functional.cross_entropy(logits, labels)
    assert torch.allclose(kd_loss(logits, logits * 3, labels, kd_weight=0.0, temperature=2.0), ce)
    assert torch.allclose(kd_loss(logits, logits, labels, kd_weight=1.0, temperature=2.0), torch.tensor(0.0), atol=1e-6)


def test_finetune_kd_trains_the_student_and_leaves_it_in_eval_mode(fashion_dir: Path) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = load_dataset("fashion-mnist", fashion_dir, val_size=500, seed=0)
        space = get_space("mbv3-tiny")
        with torch.random.fork_rng():
            torch.manual_seed(0)
            supernet = Supernet(space).eval()
        arch, teacher_arch = smallest(space), largest(space, resolution=28)
        student = extract(supernet, arch)
        start = [p.detach().clone() for p in student.parameters()]

        def epoch_batches(epoch: int):  # type: ignore[no-untyped-def]
            return batches(data.train, batch_size=16, resolution=28, limit=3)

        losses = finetune_kd(student, lambda x: supernet(x, teacher_arch), epoch_batches,
                             cfg=FinetuneConfig(epochs=2, lr=0.05), steps_per_epoch=3)
        assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
        assert not student.training
        assert any(not torch.equal(a, b) for a, b in zip(start, student.parameters()))
        assert finetune_kd(student, lambda x: x, epoch_batches, cfg=FinetuneConfig(epochs=0), steps_per_epoch=1) == []
    finally:
        torch.set_num_threads(before)
    with pytest.raises(HwnasError):
        FinetuneConfig(epochs=-1)
    with pytest.raises(HwnasError):
        FinetuneConfig(kd_weight=2.0)
