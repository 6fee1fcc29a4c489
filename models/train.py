"""Training and evaluation loops (plain torch, CPU-friendly), with a progress bar and curves."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn


@dataclass
class History:
    """Loss and accuracy per logged step (training batches) and per evaluation."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    acc: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    eval_acc: list[float] = field(default_factory=list)


def accuracy(model: nn.Module, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> float:
    """Top-1 accuracy over ``(x [B, C, H, W], y [B])`` batches, in eval mode."""
    model.eval()
    correct = total = 0
    with torch.inference_mode():
        for x, y in batches:
            pred = model(torch.as_tensor(x)).argmax(1).numpy()
            correct += int((pred == np.asarray(y)).sum())
            total += len(y)
    return correct / max(total, 1)


def fit(
    model: nn.Module,
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    steps: int,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    evaluate: Callable[[], float] | None = None,
    eval_every: int = 0,
    progress: bool = True,
    params: Iterable[nn.Parameter] | None = None,
) -> History:
    """Adam with a cosine schedule over ``steps`` batches ``(x, y)`` or ``(x, y, valid)`` (a padded
    batch of a padding-invariant model); returns the :class:`History`."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    trainable = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    loss_fn = nn.CrossEntropyLoss()
    hist = History()
    bar = tqdm(total=steps, disable=not progress, desc="train", leave=False)
    it = iter(batches)
    for step in range(1, steps + 1):
        x, y, *valid = next(it)  # (x, y) or (x, y, valid sizes [B, 2] of a zero-padded batch)
        model.train()
        logits = model(torch.as_tensor(x), *(torch.as_tensor(v) for v in valid))
        target = torch.as_tensor(y)
        loss = loss_fn(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        hist.step.append(step)
        hist.loss.append(loss.item())
        hist.acc.append(float((logits.argmax(1) == target).float().mean()))
        bar.update(1)
        bar.set_postfix(loss=f"{hist.loss[-1]:.3f}", acc=f"{np.mean(hist.acc[-20:]):.2f}")
        if evaluate is not None and eval_every and (step % eval_every == 0 or step == steps):
            hist.eval_step.append(step)
            hist.eval_acc.append(evaluate())
    bar.close()
    return hist


def plot_history(hist: History, path: str | Path, title: str = "") -> Path:
    """A PNG of the training loss and accuracy (smoothed) and the evaluation accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def smooth(v, k=20):
        v = np.asarray(v, dtype=float)
        if len(v) < k:
            return v
        return np.convolve(v, np.ones(k) / k, mode="valid")

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.5))
    a1.plot(hist.step[: len(smooth(hist.loss))], smooth(hist.loss))
    a1.set_xlabel("step")
    a1.set_ylabel("training loss")
    a2.plot(hist.step[: len(smooth(hist.acc))], smooth(hist.acc), label="training batches")
    if hist.eval_step:
        a2.plot(hist.eval_step, hist.eval_acc, "o-", label="held-out")
    a2.set_xlabel("step")
    a2.set_ylabel("accuracy")
    a2.set_ylim(0, 1)
    a2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
