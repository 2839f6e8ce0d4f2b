"""Training device (auto/cpu/cuda), checkpoints on the CPU, and the [quant] config section."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from qpde.config import Variant, config_from_dict
from qpde.errors import ConfigError
from qpde.train import build_model, fit, load_checkpoint, resolve_device, save_checkpoint

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
SHAPE = {"width": 4, "modes": 4, "layers": 1, "proj": 8}
QUANT = {"rounding": "round", "state_bits": 12}


def _pairs(n=16, points=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, points)).astype(np.float32)
    return x, np.roll(x, 1, axis=1)


def test_fit_moves_model_and_batches_to_the_device_and_back():
    """The CUDA code path with device=cpu: model and batches go through .to(device), the model is
    returned on the CPU, and resolve_device('auto') picks what PyTorch sees."""
    torch.manual_seed(0)
    model = build_model("fno", 16, SHAPE, "w4a8", quant=QUANT)
    device = resolve_device("auto")
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    history = fit(model, _pairs(), _pairs(8, seed=1), epochs=1, lr=1e-3, batch_size=8, seed=0, label="t",
                  device=torch.device("cpu"))
    assert np.isfinite(history[-1]["val_mse"])
    assert {p.device.type for p in model.parameters()} == {"cpu"}


def test_checkpoint_is_on_the_cpu_and_keeps_quant_options(tmp_path):
    torch.manual_seed(0)
    model = build_model("fno", 16, SHAPE, "w4a8", quant=QUANT)
    fit(model, _pairs(), _pairs(8, seed=1), epochs=1, lr=1e-3, batch_size=8, seed=0, label="t", device="cpu")
    path = save_checkpoint(tmp_path / "c.pt", model, Variant("burgers", "fno", "w4a8", 16), SHAPE, [], QUANT)
    payload = torch.load(path, map_location="cpu", weights_only=False)
    assert payload["quant"] == QUANT
    assert all(v.device.type == "cpu" for v in payload["state_dict"].values())
    loaded = load_checkpoint(path)
    assert loaded.spec.rounding == "round" and loaded.spec.state_width == 12
    x = torch.from_numpy(_pairs()[0])
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@no_cuda
def test_cuda_without_a_gpu_is_a_config_error():
    with pytest.raises(ConfigError, match="cuda"):
        resolve_device("cuda")


@no_cuda
def test_cli_device_cuda_without_a_gpu_exits_2_with_one_line(tmp_path):
    from qpde.cli import app

    result = CliRunner().invoke(app, ["run", "--out", str(tmp_path), "--device", "cuda"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "cuda" in lines[0]
    assert not (tmp_path / "models").exists()  # refused before any training


def test_quant_and_device_config_are_checked():
    cfg = config_from_dict({"quant": {"rounding": "floor", "state_bits": 12}, "train": {"device": "cpu"}})
    assert cfg.quant.rounding == "floor" and cfg.quant.state_bits == 12 and cfg.train.device == "cpu"
    assert config_from_dict({}).quant.rounding == "round" and config_from_dict({}).quant.state_bits == 16
    for bad in ({"quant": {"rounding": "nearest"}}, {"quant": {"state_bits": 40}}, {"quant": {"state_bits": 1}},
                {"train": {"device": "tpu"}}, {"quant": {"bits": 8}}):
        with pytest.raises(ConfigError):
            config_from_dict(bad)


def test_state_width_is_never_below_the_activation_bits():
    from qpde.quant import parse_scenario

    assert parse_scenario("w4a8").with_options("round", 16).state_width == 16
    assert parse_scenario("w8a32").with_options("round", 16).state_width == 32
    assert parse_scenario("w4a8").state_width == 8  # no [quant]: the activation width (old checkpoints)


def test_keep_best_restores_the_epoch_with_the_lowest_validation_mse():
    torch.manual_seed(0)
    model = build_model("fno", 16, SHAPE, "w4a8", quant=QUANT)
    val = _pairs(8, seed=1)
    history = fit(model, _pairs(), val, epochs=4, lr=3e-2, batch_size=8, seed=0, label="t", device="cpu",
                  keep_best=True)
    kept = [h for h in history if h.get("kept")]
    assert len(kept) == 1 and kept[0]["val_mse"] == min(h["val_mse"] for h in history)
    model.eval()
    with torch.no_grad():
        mse = torch.nn.functional.mse_loss(model(torch.from_numpy(val[0])), torch.from_numpy(val[1])).item()
    assert mse == kept[0]["val_mse"]


def test_ray_worker_refuses_an_out_folder_it_cannot_see(tmp_path):
    """--executor ray writes a marker in --out; a worker that does not see it (no shared file
    system at the same path) refuses with a clear error instead of writing elsewhere."""
    from qpde.pipeline import MARKER, _check_shared_root

    with pytest.raises(ConfigError, match="shared at the same path"):
        _check_shared_root(str(tmp_path), "abc")
    (tmp_path / MARKER).write_text("other")
    with pytest.raises(ConfigError, match="differs"):
        _check_shared_root(str(tmp_path), "abc")
    (tmp_path / MARKER).write_text("abc")
    _check_shared_root(str(tmp_path), "abc")
    _check_shared_root(str(tmp_path / "nowhere"), None)  # local executors: no check
