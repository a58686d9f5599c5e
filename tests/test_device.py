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
    monkeypatch.setattr("qa.device.nncf_installed", lambda: True)
    monkeypatch.setattr("qa.device.cpu_has_bf16", lambda: True)
    assert choose_backend("auto", "cpu", "bf16") == "openvino"
    assert choose_backend("auto", "cpu", "fp32") == "torch"  # measured faster in bf16 and int8 only, so far
    assert choose_backend("auto", "cpu", "int8") == "openvino"  # static int8
    assert choose_backend("auto", "cuda", "fp16") == "torch"
    assert choose_backend("openvino", "cpu", "fp32") == choose_backend("openvino", "cpu", "int8") == "openvino"
    with pytest.raises(QAError, match="runs on the CPU"):
        choose_backend("openvino", "cuda", "fp16")
    with pytest.raises(QAError, match="runs bf16, fp32 or int8, not fp16"):
        choose_backend("openvino", "cpu", "fp16")
    monkeypatch.setattr("qa.device.nncf_installed", lambda: False)
    assert choose_backend("auto", "cpu", "int8") == "torch"  # torch's dynamic int8
    with pytest.raises(QAError, match=r"needs NNCF: pip install 'qa\[openvino\]'"):
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


@pytest.fixture
def fresh_bf16_choice():
    from qa.device import cpu_prefers_bf16

    cpu_prefers_bf16.cache_clear()
    yield
    cpu_prefers_bf16.cache_clear()


def test_bf16_is_chosen_only_where_its_matrix_products_are_faster_and_the_measurement_is_kept(monkeypatch, tmp_path, fresh_bf16_choice):
    import json

    from qa import device

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: True)
    speed, measured = [0.56], []
    monkeypatch.setattr(device, "bf16_speedup", lambda: measured.append(speed[0]) or speed[0])
    assert device.default_precision("cpu") == "fp32" and measured == [0.56]  # bf16 instructions, slower products
    assert device.default_precision("cuda") == "fp16"
    kept = tmp_path / "qa" / device.BF16_CHOICE_FILE
    assert [entry["bf16_speedup"] for entry in json.loads(kept.read_text()).values()] == [0.56]
    assert [p.name for p in kept.parent.iterdir()] == [kept.name]  # written aside, then renamed: nothing else left
    device.cpu_prefers_bf16.cache_clear()  # as in a new process: what was measured is read, not measured again
    speed[0] = 3.0
    assert device.default_precision("cpu") == "fp32" and measured == [0.56]
    kept.write_text("{damaged")
    device.cpu_prefers_bf16.cache_clear()
    assert device.default_precision("cpu") == "bf16" and measured == [0.56, 3.0]  # measured again, and kept
    assert [entry["bf16_speedup"] for entry in json.loads(kept.read_text()).values()] == [3.0]
    monkeypatch.setenv("XDG_CACHE_HOME", str(kept))  # a cache folder that cannot be made: measured, not kept, no error
    device.cpu_prefers_bf16.cache_clear()
    assert device.default_precision("cpu") == "bf16" and len(measured) == 3
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: False)  # no bf16 instructions: nothing to measure
    device.cpu_prefers_bf16.cache_clear()
    assert device.default_precision("cpu") == "fp32" and len(measured) == 3


def test_the_bf16_measurement_is_a_speed_ratio():
    from qa.device import bf16_speedup

    assert 0.01 < bf16_speedup(rounds=1) < 100
