"""Device choice, scale presets, seeding, precision and compile policy (all on CPU)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from tdlcourse import device


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("TDL_DEVICE", raising=False)
    monkeypatch.delenv("TDL_SCALE", raising=False)


def test_auto_order_is_cuda_then_mps_then_cpu(no_env, monkeypatch):
    for present, expected in (({"cuda", "mps", "cpu"}, "cuda"), ({"mps", "cpu"}, "mps"), ({"cpu"}, "cpu")):
        monkeypatch.setattr(device, "_available", lambda kind, p=present: kind in p)
        assert device.get_device().type == expected
        assert device.get_device("auto").type == expected


def test_tdl_device_overrides_auto(no_env, monkeypatch):
    monkeypatch.setattr(device, "_available", lambda kind: True)
    monkeypatch.setenv("TDL_DEVICE", "cpu")
    assert device.get_device() == torch.device("cpu")
    monkeypatch.setenv("TDL_DEVICE", "tpu")
    with pytest.raises(ValueError, match=r"TDL_DEVICE='tpu'.*allowed: 'auto', 'cuda', 'cuda:N', 'mps', 'cpu'"):
        device.get_device()


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "mps:0", "cpu:1", "CUDA", ""])
def test_unknown_device_names_list_the_allowed_values(no_env, name):
    with pytest.raises(ValueError, match=r"allowed: 'auto', 'cuda', 'cuda:N', 'mps', 'cpu'"):
        device.get_device(name)


def test_absent_device_is_a_runtime_error(no_env, monkeypatch):
    monkeypatch.setattr(device, "_available", lambda kind: kind == "cpu")
    with pytest.raises(RuntimeError, match="not available"):
        device.get_device("cuda:0")
    assert device.get_device(torch.device("cpu")) == torch.device("cpu")


def test_scale_resolution(no_env, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.resolve_scale("auto") == "cpu" and device.resolve_scale(None) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.resolve_scale("auto") == "gpu"
    monkeypatch.setenv("TDL_SCALE", "ci")
    assert device.resolve_scale("auto") == "ci"
    assert device.resolve_scale("cpu") == "cpu"  # an explicit argument wins over the environment
    monkeypatch.setenv("TDL_SCALE", "huge")
    with pytest.raises(ValueError, match=r"TDL_SCALE='huge'.*'ci', 'cpu', 'gpu'"):
        device.resolve_scale("auto")


@pytest.mark.parametrize("bad", ["huge", "GPU", 3, ""])
def test_unknown_scale_lists_the_allowed_values(no_env, bad):
    with pytest.raises(ValueError, match=r"allowed: 'ci', 'cpu', 'gpu', 'auto'"):
        device.resolve_scale(bad)


def test_by_scale_picks_the_resolved_value(no_env):
    assert [device.by_scale(s, ci=1, cpu=2, gpu=3) for s in ("ci", "cpu", "gpu")] == [1, 2, 3]
    with pytest.raises(ValueError, match="allowed"):
        device.by_scale("huge", ci=1, cpu=2, gpu=3)


def test_seed_everything_makes_all_generators_repeat():
    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    g1 = device.seed_everything(7)
    a = draw() + (float(torch.rand((), generator=g1)),)
    g2 = device.seed_everything(7)
    b = draw() + (float(torch.rand((), generator=g2)),)
    assert a == b
    device.seed_everything(8)
    assert draw() != a[:3]
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="seed"):
            device.seed_everything(bad)


def test_describe_follows_the_environment(no_env, monkeypatch):
    """What a lab prints is what it will run on: the overrides and the available devices decide."""
    monkeypatch.setattr(device, "_available", lambda kind: kind in {"cuda", "cpu"})
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Fake GPU")
    info = device.describe()
    assert (info["device"], info["scale"], info["precision"], info["gpu"]) == ("cuda", "gpu", "tf32", "Fake GPU")
    monkeypatch.setenv("TDL_DEVICE", "cpu")
    monkeypatch.setenv("TDL_SCALE", "ci")
    info = device.describe()
    assert (info["device"], info["scale"], info["precision"]) == ("cpu", "ci", "fp32") and "gpu" not in info


def test_precision_resolution_table():
    assert device.resolve_precision("auto", "cpu") == "fp32"
    assert device.resolve_precision("auto", "cuda") == "tf32"
    assert device.resolve_precision("tf32", "cpu") == "fp32"  # no TF32 on CPUs
    assert device.resolve_precision("bf16", "cpu") == "bf16"
    assert device.resolve_precision("fp32", "cuda") == "fp32"
    with pytest.raises(ValueError, match=r"precision='fp16'.*'auto', 'fp32', 'tf32', 'bf16'"):
        device.resolve_precision("fp16", "cpu")


def test_tf32_context_sets_and_restores_the_global_flag():
    before = torch.get_float32_matmul_precision()
    with device.matmul_precision("auto", "cuda") as resolved:  # the flag is settable without a GPU
        assert resolved == "tf32"
        assert torch.get_float32_matmul_precision() == "high"
    assert torch.get_float32_matmul_precision() == before
    with pytest.raises(KeyError):
        with device.matmul_precision("tf32", "cuda"):
            raise KeyError("boom")
    assert torch.get_float32_matmul_precision() == before
    with device.matmul_precision("auto", "cpu") as resolved:
        assert resolved == "fp32" and torch.get_float32_matmul_precision() == before


def test_bf16_autocast_on_cpu_changes_the_matmul_dtype():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with device.autocast("bf16", "cpu"):
        assert (a @ b).dtype == torch.bfloat16
    with device.autocast("fp32", "cpu"):
        assert (a @ b).dtype == torch.float32
    with device.autocast("auto", torch.device("cpu")):
        assert (a @ b).dtype == torch.float32


def test_compile_backend_choice():
    assert device.compile_backend(False) is None
    assert device.compile_backend(True) == "inductor"
    assert device.compile_backend("eager") == "eager"
    with pytest.raises(ValueError, match=r"compile='turbo'.*'eager'"):
        device.compile_backend("turbo")
    assert device.compile_backend(np.bool_(True)) == "inductor" and device.compile_backend(np.bool_(False)) is None
    with pytest.raises(ValueError, match="compile=1 must be True or False"):
        device.compile_backend(1)  # not a bool, though 1 == True
    device.synchronize("cpu")  # a no-op on CPU
