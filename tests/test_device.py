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
