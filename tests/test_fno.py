import numpy as np
import pytest
import torch

from qpde.cost import layer_costs, total_cost
from qpde.models.fno import FNO1d, ComplexBlockMixing, FNOConfig, dft_matrices
from qpde.quant import parse_scenario


def test_dft_matrices_match_numpy_rfft():
    """Float maths, so a float tolerance (1e-12 absolute on O(1) values)."""
    n, modes = 32, 8
    forward, inverse = dft_matrices(n, modes)
    x = np.random.default_rng(0).normal(size=n)
    spectrum = np.fft.rfft(x, norm="forward")[:modes]
    np.testing.assert_allclose(forward @ x, np.concatenate([spectrum.real, spectrum.imag]), atol=1e-12)
    band = np.fft.irfft(np.concatenate([spectrum, np.zeros(n // 2 + 1 - modes)]), n=n, norm="forward")
    np.testing.assert_allclose(inverse @ (forward @ x), band, atol=1e-12)


def test_too_many_modes_is_refused():
    with pytest.raises(ValueError, match="Nyquist"):
        dft_matrices(16, 9)


def test_block_mixing_is_complex_multiplication_per_mode():
    c, m = 3, 4
    raw = torch.randn(2, m, c, c, dtype=torch.float64)
    full = ComplexBlockMixing(c, m)(raw)
    spectrum = torch.randn(c, 2 * m, dtype=torch.float64)
    out = (full @ spectrum.reshape(-1)).reshape(c, 2 * m)
    z = torch.complex(spectrum[:, :m], spectrum[:, m:])
    ref = torch.einsum("kdc,ck->dk", torch.complex(raw[0], raw[1]), z)
    torch.testing.assert_close(out[:, :m], ref.real)
    torch.testing.assert_close(out[:, m:], ref.imag)
    torch.testing.assert_close(ComplexBlockMixing(c, m).right_inverse(full), raw)


@pytest.mark.parametrize("scenario", ["fp32", "w4a4"])
def test_fno_maps_fields_to_fields(scenario):
    model = FNO1d(16, FNOConfig(width=4, modes=4, layers=2, proj=8), parse_scenario(scenario))
    assert model(torch.randn(3, 16)).shape == (3, 16)


def test_cost_counts_nonzero_macs_and_bits():
    shape = FNOConfig(width=4, modes=4, layers=1, proj=8)
    n = 16
    quant = FNO1d(n, shape, parse_scenario("w4a8"))
    costs = {c.name: c for c in layer_costs(quant, parse_scenario("w4a8"))}
    assert costs["lift"].macs == n * 4  # 1 → 4 channels at every point
    assert costs["layers.0.spectral.mix"].macs == 4 * (2 * 4) ** 2  # modes × (2C)² real block entries
    # DFT: 2M rows of N, minus the all-zero sin row of mode 0 and sin zeros at x=0, for each channel
    forward, _ = dft_matrices(n, 4)
    assert costs["layers.0.spectral.dft"].macs == int((np.abs(forward) > 1e-12).sum()) * 4
    totals_q = total_cost(quant, parse_scenario("w4a8"))
    totals_f = total_cost(FNO1d(n, shape, parse_scenario("fp32")), parse_scenario("fp32"))
    assert totals_q["macs"] == totals_f["macs"]
    assert totals_q["bops"] * 32 * 32 == totals_f["bops"] * 4 * 8
