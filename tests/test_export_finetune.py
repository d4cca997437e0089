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

        losses = finetune_kd(
            student,
            lambda x: supernet(x, teacher_arch),
            epoch_batches,
            cfg=FinetuneConfig(epochs=2, lr=0.05),
            steps_per_epoch=3,
        )
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


def test_kd_teacher_is_the_largest_subnet_at_the_largest_resolution_with_its_own_bn_statistics(
    fashion_dir: Path,
) -> None:
    from hwnas.data import resize
    from hwnas.export.pipeline import kd_teacher

    data = load_dataset("fashion-mnist", fashion_dir, val_size=500, seed=0)
    space = get_space("mbv3-tiny")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        supernet = Supernet(space).eval()
    bns = [m for m in supernet.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:  # statistics of some other subnet, as a checkpoint stores them
        bn.running_mean.fill_(5.0)
        bn.running_var.fill_(100.0)
    teacher = kd_teacher(supernet, space, data.train, batch_size=32, seed=0, recalib_batches=2)
    assert all(not torch.all(bn.running_mean == 5.0) for bn in bns)  # re-estimated on train images
    x, _ = next(batches(data.test, batch_size=8))  # 28 px, the data's own size
    with torch.no_grad():
        out = teacher(x)
        want = supernet(resize(x, max(space.resolutions)), largest(space))
    assert not supernet.training and out.shape == (8, space.num_classes) and torch.equal(out, want)
