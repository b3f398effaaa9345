"""The loops: one training epoch, and logits for a list of samples.  Device handling lives here too."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm.auto import tqdm

from detector.preprocessing import PreprocessConfig
from training.data import Augmentation, ImageDataset, Sample, collate_skipping_bad


def resolve_device(choice: str) -> torch.device:
    """``auto`` means the GPU when there is one; asking for ``cuda`` without one is an error."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device")
    device = torch.device(choice)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one input size throughout: let cuDNN pick its fastest kernels
    return device


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The mixed-precision type on ``device``: bf16 on a GPU that has it, fp16 on an older one, none on a CPU.

    bf16 keeps fp32's exponent range, so its losses need no scaling (the GradScaler is bypassed); fp16's do.
    """
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device) -> contextlib.AbstractContextManager[None]:
    """Mixed precision (:func:`autocast_dtype`) on a GPU; full precision elsewhere."""
    dtype = autocast_dtype(device)
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_loader(
    samples: Sequence[Sample],
    config: PreprocessConfig,
    *,
    batch_size: int,
    workers: int,
    shuffle: bool,
    augment: Augmentation | None = None,
    seed: int = 0,
    device: torch.device | None = None,
    weights: Sequence[float] | None = None,
    prefetch: int = 4,
) -> DataLoader:
    """A loader over ``samples``; with ``weights``, an epoch draws ``len(samples)`` images by weight instead.

    On a GPU the loader is what keeps it busy: ``workers`` processes decode and augment (they stay up
    between epochs), each ``prefetch`` batches ahead, into pinned memory that the training loop copies
    from without blocking (``non_blocking=True``). A GPU that trains Lite0 at ~5,000 images/s in bf16
    needs many workers: ``--workers`` about the number of cores.
    """
    generator = torch.Generator().manual_seed(seed) if shuffle or weights is not None else None
    sampler = None
    if weights is not None:
        sampler = WeightedRandomSampler(weights, num_samples=len(samples), replacement=True, generator=generator)
    return DataLoader(
        ImageDataset(samples, config, augment),
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_skipping_bad,
        pin_memory=device is not None and device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=prefetch if workers > 0 else None,
        generator=generator if sampler is None else None,
        # each worker gets its own seed, so random augmentations differ across workers and epochs
        worker_init_fn=_seed_worker if workers else None,
    )


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


#: the progress bar's loss and accuracy are read back from the device every this many steps
POSTFIX_EVERY = 20


@dataclass
class EpochResult:
    loss: float
    accuracy: float
    images: int


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    scaler: torch.amp.GradScaler,
    *,
    description: str = "train",
    max_batches: int | None = None,
    label_smoothing: float = 0.0,
) -> EpochResult:
    """One pass over ``loader`` with cross-entropy, in mixed precision on a GPU (:func:`autocast`).

    ``scaler`` scales the loss only where the mixed precision is fp16; bf16 needs no scaling.
    """
    model.train()
    scaled = scaler.is_enabled() and autocast_dtype(device) == torch.float16
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    # running sums stay on the device: reading them back each step would stall a GPU's queue of work
    total_loss, correct, seen = torch.zeros((), device=device), torch.zeros((), device=device), 0
    bar = tqdm(loader, desc=description, unit="batch", leave=False, dynamic_ncols=True)
    for step, (images, targets) in enumerate(bar):
        if max_batches is not None and step >= max_batches:
            break
        if len(targets) == 0:
            continue
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        targets = targets.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device):
            logits = model(images)
            loss = criterion(logits, targets)
        if scaled:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        total_loss += loss.detach().float() * len(targets)
        correct += (logits.argmax(1) == targets).sum()
        seen += len(targets)
        if step % POSTFIX_EVERY == 0:
            bar.set_postfix(loss=f"{total_loss.item() / seen:.4f}", acc=f"{correct.item() / seen:.3f}")
    bar.close()
    if seen == 0:
        raise RuntimeError("no training image could be decoded in this epoch")
    return EpochResult(total_loss.item() / seen, correct.item() / seen, seen)


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    *,
    description: str = "predict",
    max_batches: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and integer targets for every decodable image of ``loader``, in order."""
    model.eval()
    all_logits, all_targets = [], []
    for step, (images, targets) in enumerate(tqdm(loader, desc=description, unit="batch", leave=False)):
        if max_batches is not None and step >= max_batches:
            break
        if len(targets) == 0:
            continue
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with autocast(device):
            logits = model(images)
        all_logits.append(logits.float().cpu().numpy())
        all_targets.append(targets.numpy())
    if not all_logits:
        return np.zeros((0, 2), dtype=np.float32), np.zeros(0, dtype=np.int64)
    return np.concatenate(all_logits), np.concatenate(all_targets)


def make_optimizer(
    model: nn.Module, learning_rate: float, weight_decay: float, backbone_lr_scale: float = 1.0
) -> torch.optim.Optimizer:
    """Adam with the head (``model.classifier``) at ``learning_rate`` and the backbone at a share of it.

    A smaller step for the ImageNet backbone keeps more of its general features (fine-tuning
    distorts them fastest where the new data are narrow); a share of 0 freezes it outright.
    """
    head = list(model.classifier.parameters())
    head_ids = {id(p) for p in head}
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
    if backbone_lr_scale == 0:
        for parameter in backbone:
            parameter.requires_grad_(False)
        groups = [{"params": head}]
    else:
        groups = [{"params": head}, {"params": backbone, "lr": learning_rate * backbone_lr_scale}]
    return torch.optim.Adam(groups, lr=learning_rate, weight_decay=weight_decay)


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean cross-entropy of precomputed logits (validation loss without a second pass)."""
    if len(targets) == 0:
        return float("nan")
    return float(nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(targets)).item())
