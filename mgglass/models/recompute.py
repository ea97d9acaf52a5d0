"""Activation checkpointing that leaves batch-norm running statistics as one forward pass left them.

``torch.utils.checkpoint`` re-runs the forward in backward; a batch norm in training mode would then
update its running statistics a second time per step (an effective momentum of about twice the
configured one). ``checkpoint_once`` re-runs it with those statistics frozen.
"""

from __future__ import annotations

import contextlib

from torch import nn
from torch.utils.checkpoint import checkpoint

# The batch norms with running statistics: the public classes under torch's private base
# ``nn.modules.batchnorm._BatchNorm`` (tests/test_compat.py checks the list is complete).
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
               nn.LazyBatchNorm1d, nn.LazyBatchNorm2d, nn.LazyBatchNorm3d)


@contextlib.contextmanager
def frozen_running_stats(module: nn.Module):
    """Batch norms in ``module`` leave their running statistics as they are (momentum 0; the batch
    counter restored). Not ``track_running_stats=False``: that saves other tensors for backward."""
    norms = [m for m in module.modules() if isinstance(m, BATCH_NORMS) and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, count) in zip(norms, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)


def checkpoint_once(fn, *args, stats_of: nn.Module):
    """``checkpoint(fn, *args)`` whose recomputation does not update the batch norms in ``stats_of``."""
    return checkpoint(
        fn, *args, use_reentrant=False, context_fn=lambda: (contextlib.nullcontext(), frozen_running_stats(stats_of))
    )
