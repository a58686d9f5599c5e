"""Device choice: /proc/cpuinfo read in one place, devices checked before any work."""

import pytest
import torch

from qa.device import cpu_info, parse_cpuinfo, pick_device
from qa.errors import QAError

CPUINFO = """processor\t: 0
model name\t: Example CPU @ 2.10GHz
cpu MHz\t\t: 2100.000
flags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni

processor\t: 1
model name\t: Other
flags\t\t: fpu
"""


def test_cpuinfo_of_the_first_processor():
    info = parse_cpuinfo(CPUINFO.splitlines(keepends=True))
    assert info.name == "Example CPU @ 2.10GHz" and info.mhz == 2100.0
    assert {"avx512_bf16", "avx512_vnni", "avx2"} <= info.flags and "fpu" in info.flags
    empty = parse_cpuinfo([])
    assert empty.flags == frozenset() and empty.mhz is None and empty.name


def test_this_machine_has_a_name():
    assert cpu_info().name


@pytest.mark.parametrize("device", ["banana", "tpu", "cuda:x"])
def test_unknown_devices_are_refused(device):
    with pytest.raises(QAError):
        pick_device(device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(QAError, match="no usable CUDA GPU"):
        pick_device("cuda")
    assert pick_device(None) == "cpu" and pick_device("cpu") == "cpu"


def test_the_backend_is_checked_against_device_precision_and_installation(monkeypatch):
    from qa.device import choose_backend

    monkeypatch.setattr("qa.device.openvino_installed", lambda: True)
    monkeypatch.setattr("qa.device.cpu_has_bf16", lambda: True)
    assert choose_backend("auto", "cpu", "bf16") == "openvino"
    assert choose_backend("auto", "cpu", "fp32") == "torch"  # measured faster in bf16 only, so far
    assert choose_backend("auto", "cpu", "int8") == choose_backend("auto", "cuda", "fp16") == "torch"
    assert choose_backend("openvino", "cpu", "fp32") == "openvino"
    with pytest.raises(QAError, match="runs on the CPU"):
        choose_backend("openvino", "cuda", "fp16")
    with pytest.raises(QAError, match="runs bf16 or fp32, not int8"):
        choose_backend("openvino", "cpu", "int8")
    with pytest.raises(QAError, match="unknown backend"):
        choose_backend("onnx", "cpu", "bf16")
    monkeypatch.setattr("qa.device.cpu_has_bf16", lambda: False)
    assert choose_backend("auto", "cpu", "bf16") == "torch"  # bf16 emulated: not where OpenVINO was measured
    monkeypatch.setattr("qa.device.cpu_has_bf16", lambda: True)
    monkeypatch.setattr("qa.device.openvino_installed", lambda: False)
    assert choose_backend("auto", "cpu", "bf16") == "torch"
    with pytest.raises(QAError, match=r"pip install 'qa\[openvino\]'"):
        choose_backend("openvino", "cpu", "bf16")
