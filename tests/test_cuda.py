"""The GPU path: the same numbers on CUDA as on CPU. Skipped without CUDA (CI has none); run them on a
GPU machine after `make install TORCH=...` with a CUDA build (docs/install.md#gpu)."""

import copy

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _glass(n=900, seed=6):
    from torch_geometric.data import Batch

    from mgglass.data import glass_to_data, make_glass
    from mgglass.data.order import spatially_ordered

    return Batch.from_data_list([spatially_ordered(glass_to_data(make_glass(n, seed=seed)))[0]])


def _net():
    from mgglass.models.symgnn import SymGNN

    torch.manual_seed(7)
    return SymGNN(hidden=16, heads=(4, 2, 1), dropout=0.0, k_train=2, k_eval=4, decoder_layers=2, edge_lengths=True, cardinality=0.03)


def test_radius_graph_on_cuda_equals_cpu():
    from mgglass.data import make_glass, radius_graph_pbc

    g = make_glass(900, seed=6)
    pos, cell = torch.as_tensor(g.positions, dtype=torch.float64), torch.as_tensor(g.cell, dtype=torch.float64)
    cpu, gpu = radius_graph_pbc(pos, cell, 5.0), radius_graph_pbc(pos.cuda(), cell.cuda(), 5.0)
    key = lambda e: sorted(map(tuple, e.edge_index.cpu().t().tolist()))
    assert key(cpu) == key(gpu)


def test_training_step_on_cuda_matches_cpu():
    """Forward, loss and every gradient with the GPU's chunk sizes (one pass per kernel) against the CPU's."""
    batch, net = _glass(), _net().train()
    gpu_net, gpu_batch = copy.deepcopy(net).cuda(), batch.clone().to("cuda")
    losses = []
    for m, b in ((net, batch), (gpu_net, gpu_batch)):
        torch.manual_seed(0)
        out = m(b)
        loss = ((out - torch.linspace(-1, 1, out.shape[0], device=out.device)) ** 2).mean()
        loss.backward()
        losses.append(float(loss))
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    for (k, p), q in zip(net.named_parameters(), gpu_net.parameters()):
        if p.grad is not None:
            scale = p.grad.abs().max().clamp_min(1e-3)
            assert torch.allclose(p.grad / scale, q.grad.cpu() / scale, atol=5e-3), k


def test_prediction_on_cuda_matches_cpu():
    batch, net = _glass(), _net().eval()
    gpu_net = copy.deepcopy(net).cuda()
    with torch.no_grad():
        cpu = net(batch)
        torch.testing.assert_close(gpu_net(batch.clone().to("cuda")).cpu(), cpu, rtol=0, atol=1e-4)
        torch.testing.assert_close(gpu_net.predict_by_dst(batch.clone().to("cuda"), 100).cpu(), cpu, rtol=0, atol=1e-4)
