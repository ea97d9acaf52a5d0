"""Batch-norm statistics that match the model being evaluated.

During training, batch norm's running statistics are an exponential average over past steps, while
the weights that produced those features keep moving; with a few glasses per epoch and a high learning
rate the averages lag far behind (layer 1's running variance was 8x the current one), and eval-mode
predictions are off by eV even when their ranking is right. :class:`RecalibrateBatchNorm` recomputes
the statistics over the training glasses right before each validation (the idea of
``torch.optim.swa_utils.update_bn``), so the checkpoint saved after that validation carries the
statistics its own predictions need: ``mgglass.test`` and prediction from a checkpoint give the same
numbers without the training data.

Unlike ``update_bn``, only the batch norms are put in training mode: dropout stays off and the
SymGNN symmetriser draws its evaluation samples, so the statistics are those of the eval-mode
features. Each batch norm's statistics are the average over glasses of per-glass batch statistics
(``momentum=None``), averaged again over DDP ranks.
"""

from __future__ import annotations

import contextlib

import lightning as L
import torch
from torch import nn
from torch_geometric.data import Batch


def batch_norms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@contextlib.contextmanager
def _collecting(norms):
    """Everything in eval mode except ``norms``, which restart a cumulative average."""
    saved = [(m, m.training, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        yield
    finally:
        for m, training, momentum in saved:
            m.momentum = momentum
            m.train(training)


@torch.no_grad()
def recalibrate(net: nn.Module, graphs, device=None, max_glasses: int | None = None, reduce=None) -> int:
    """Recompute the running statistics of every batch norm in ``net`` over ``graphs`` (one glass per
    forward, eval-mode features). ``reduce(tensor) -> tensor``: mean over processes (DDP). Returns the
    number of glasses used; with none, the statistics are left as they were."""
    norms = batch_norms(net)
    graphs = list(graphs)[:max_glasses] if max_glasses else list(graphs)
    if not norms or not graphs:
        return 0
    was_training = net.training
    net.eval()
    try:
        with _collecting(norms):
            for g in graphs:
                batch = Batch.from_data_list([g])
                net(batch.to(device) if device is not None else batch)
    finally:
        net.train(was_training)
    if reduce is not None:
        for m in norms:
            m.running_mean.copy_(reduce(m.running_mean))
            m.running_var.copy_(reduce(m.running_var))
    return len(graphs)


class RecalibrateBatchNorm(L.Callback):
    """Before each validation during fit, recompute the model's batch-norm statistics over the
    training glasses (this rank's share under DDP, then averaged over ranks).

    Args:
        enabled: False keeps the running averages of training (the behaviour before this callback).
        max_glasses: use at most this many training glasses per rank (None: all of them).
        compare: also evaluate the validation glasses with training's running averages, just before
            they are replaced, and log ``val_r_ema`` and ``val_mae_ema`` (a diagnostic: one more
            forward pass per validation glass).
    """

    def __init__(self, enabled: bool = True, max_glasses: int | None = None, compare: bool = False):
        self.enabled, self.max_glasses, self.compare = enabled, max_glasses, compare

    @staticmethod
    def _ema_metrics(pl_module, graphs) -> dict[str, float]:
        from mgglass.predict import predict_pooled
        from mgglass.task import pooled_metrics

        stats = pooled_metrics(*predict_pooled(pl_module, graphs))
        return {"val_r_ema": stats["r"], "val_mae_ema": stats["mae"]}

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from lightning.pytorch.trainer.states import TrainerFn

        if not self.enabled or trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        dm = trainer.datamodule
        graphs = getattr(dm, "graphs", {}).get("train") if dm is not None else None
        if not graphs:
            return
        loader = trainer.train_dataloader
        sampler = getattr(loader, "sampler", None)
        # This rank's glasses (the training sampler's shard, without its padding repeats).
        idx = sorted(set(iter(sampler))) if sampler is not None else range(len(graphs))
        mine = [graphs[i] for i in idx]
        if self.compare and trainer.is_global_zero and dm.graphs.get("val"):
            pl_module.epoch_extras.update(self._ema_metrics(pl_module, dm.graphs["val"]))

        def reduce(t):
            return trainer.strategy.reduce(t, reduce_op="mean") if trainer.world_size > 1 else t

        recalibrate(pl_module.net, mine, pl_module.device, self.max_glasses, reduce)
