"""Latency/export on a tiny CNN: sane numbers, ORT agrees with PyTorch, clear errors.

No timing thresholds here (machines differ); speed goals live in benchmarks/.
"""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from defect_nas.core.errors import DefectNasError
from defect_nas.deploy.onnx import OnnxMismatchError, export_onnx, ort_session
from defect_nas.measure.latency import LatencyResult, cpu_model, measure_latency
from defect_nas.measure.quiet_latency import stable_latency

SHAPE = (1, 24, 24)
FAST = dict(warmup=1, repeats=3, batch_size_throughput=4)


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    )


class Noisy(nn.Module):
    """Random in eval mode: its ONNX export cannot match PyTorch."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + 10.0 * torch.randn_like(self.fc(x))


def _check_result(r: LatencyResult, backend: str) -> None:
    assert r.backend == backend
    assert r.input_shape == SHAPE
    for v in (r.latency_ms, r.latency_ms_min, r.latency_ms_max, r.throughput_img_s):
        assert v is not None and math.isfinite(v) and v > 0
    assert r.latency_ms_min <= r.latency_ms <= r.latency_ms_max
    assert r.throughput_batch_size == 4
    assert r.threads >= 1
    assert r.cpu_model and r.torch_version == torch.__version__
    json.dumps(r.to_dict())


def test_eager_latency_and_model_untouched():
    model = tiny_cnn().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = measure_latency(model, SHAPE, backend="eager", **FAST)
    _check_result(r, "eager")
    assert r.onnxruntime_version is None and r.onnx_max_abs_diff is None
    assert model.training  # caller's mode untouched
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])  # BN running stats not updated either


def test_eager_channels_last_and_threads_restored():
    old = torch.get_num_threads()
    r = measure_latency(tiny_cnn(), SHAPE, backend="eager", channels_last=True, threads=1, **FAST)
    _check_result(r, "eager")
    assert r.channels_last and r.threads == 1
    assert torch.get_num_threads() == old


def test_onnx_latency():
    r = measure_latency(tiny_cnn(), SHAPE, backend="onnx", threads=1, **FAST)
    _check_result(r, "onnx")
    assert r.threads == 1
    assert r.onnxruntime_version
    assert r.onnx_max_abs_diff is not None and r.onnx_max_abs_diff < 1e-4


@pytest.mark.parametrize("backend", ["openvino", "zentorch"])
def test_the_optional_runtimes_are_timed_after_matching_the_reference(backend):
    """OpenVINO (checked against ONNX Runtime) and zentorch (against eager PyTorch): a runtime that
    computed something else would be timed for nothing."""
    pytest.importorskip(backend)
    r = measure_latency(tiny_cnn(), SHAPE, backend=backend, threads=1, **FAST)
    _check_result(r, backend)
    assert r.onnx_max_abs_diff is not None and r.onnx_max_abs_diff < 1e-4


def test_throughput_can_be_skipped():
    r = measure_latency(tiny_cnn(), SHAPE, warmup=0, repeats=1, batch_size_throughput=None)
    assert r.throughput_img_s is None and r.latency_ms > 0


def test_export_onnx_dynamic_batch_matches_torch(tmp_path):
    model = tiny_cnn().eval()
    path = export_onnx(model, SHAPE, tmp_path / "sub" / "m.onnx")
    assert path.exists()
    sess = ort_session(path, threads=1)
    x = torch.randn(5, *SHAPE)
    (got,) = sess.run(None, {"input": x.numpy()})
    with torch.no_grad():
        ref = model(x).numpy()
    assert got.shape == (5, 3)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-3)


def test_export_mismatch_raises(tmp_path):
    with pytest.raises(OnnxMismatchError, match="differs"):
        export_onnx(Noisy(), (4,), tmp_path / "noisy.onnx")
    assert issubclass(OnnxMismatchError, DefectNasError)


@pytest.mark.parametrize(
    "shape, match",
    [
        ((3, 24, 24), "rejects input"),  # wrong channel count for the model
        ((1, 0, 24), "positive"),
        ((), "non-empty"),
        ((1, 24.0, 24), "ints"),
    ],
)
def test_bad_shapes(shape, match, tmp_path):
    with pytest.raises(DefectNasError, match=match):
        measure_latency(tiny_cnn(), shape, **FAST)
    with pytest.raises(DefectNasError, match=match):
        export_onnx(tiny_cnn(), shape, tmp_path / "m.onnx")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(backend="tensorrt"), "backend"),
        (dict(repeats=0), "repeats"),
        (dict(threads=0), "threads"),
        (dict(batch_size_throughput=0), "batch_size_throughput"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(DefectNasError, match=match):
        measure_latency(tiny_cnn(), SHAPE, **kwargs)


def test_channels_last_needs_image_shape():
    with pytest.raises(DefectNasError, match="channels_last"):
        measure_latency(nn.Linear(4, 2), (4,), channels_last=True, **FAST)


def test_cpu_model_nonempty():
    assert isinstance(cpu_model(), str) and cpu_model()


def test_stable_latency_reports_each_measurement_and_their_spread():
    before = torch.get_num_threads()
    r = stable_latency(tiny_cnn(), SHAPE, threads=1, measurements=3, min_run_time=0.02)
    assert len(r.measurements_ms) == 3 and min(r.measurements_ms) <= r.latency_ms <= max(r.measurements_ms)
    assert r.latency_ms > 0 and r.cv >= 0 and r.threads == 1 and r.backend == "onnx"
    assert torch.get_num_threads() == before
    with pytest.raises(DefectNasError, match="at least 2"):
        stable_latency(tiny_cnn(), SHAPE, measurements=1)
