"""bench/encoder_profile.py: the FLOP count the encoder benchmark divides by, checked against
hand-counted formulas on small layers that take the encoder's CPU kernels."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO_ROOT
from torch import nn

sys.path.insert(0, str(REPO_ROOT / "bench"))

from encoder_profile import count_gflop, flop_counter, parts_table, profile_parts

from dsviewer.model.encoder.common.cpu_kernels import Linear, linear_gelu


def test_oneDNN_linear_and_cpu_attention_are_counted():
    layer = Linear(16, 24)
    x = torch.randn(3, 50, 16)
    q, k, v = torch.randn(2, 4, 30, 8), torch.randn(2, 4, 70, 8), torch.randn(2, 4, 70, 8)
    conv = nn.Conv2d(5, 7, 3, padding=1)
    image = torch.randn(2, 5, 9, 11)
    with torch.inference_mode(), flop_counter() as counter:
        layer(x)  # the oneDNN path (inference, CPU, float32)
        linear_gelu(layer, x)
        F.scaled_dot_product_attention(q, k, v)
        conv(image)
    linear = 2 * 3 * 50 * 16 * 24
    attention = 2 * (2 * 2 * 4 * 30 * 70 * 8)  # Q K^T and P V, a multiply-add each
    convolution = 2 * (2 * 9 * 11) * 7 * 5 * 3 * 3
    assert counter.get_total_flops() == 2 * linear + attention + convolution


def test_count_gflop_and_the_part_table_add_up():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.gaussian_head = nn.Sequential(Linear(8, 32), nn.GELU(), Linear(32, 8))

        def forward(self, x):
            return self.gaussian_head(x)

    model = Tiny()
    x = torch.randn(100, 8)
    expected = 2 * 100 * (8 * 32 + 32 * 8) / 1e9
    with torch.inference_mode():
        assert count_gflop(lambda: model(x)) == pytest.approx(expected)
        parts, total, operators = profile_parts(model, lambda: model(x), "cpu")
    head = next(p for p in parts if p.label == "Gaussian regressor + head")
    assert head.gflop == pytest.approx(expected) and total.gflop == pytest.approx(expected)
    assert sum(p.gflop for p in parts) == pytest.approx(total.gflop)
    assert "_linear_pointwise" in operators
    table = parts_table(parts, total)
    assert f"| {expected:.1f} |" in table and "| whole forward |" in table
