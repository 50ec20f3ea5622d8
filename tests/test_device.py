"""What a run records about the machine it ran on (``cifarbudget.device.cpu_info``)."""

from __future__ import annotations

from cifarbudget.device import cpu_info, cpu_model

# two processors of a 2-core VM as Linux lists them (abridged); only the first block is read
ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
stepping\t: 1
cpu MHz\t\t: 2596.144
cache size\t: 1024 KB
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512_bf16 sha_ni

processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 23
model\t\t: 49
model name\t: another name
flags\t\t: fpu amx_tile
"""

ARM = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes sve
CPU implementer\t: 0x41
"""


def test_cpu_info_tells_cpus_with_the_same_name_apart() -> None:
    info = cpu_info(ZEN4)
    assert info == {
        "model_name": "AMD EPYC",
        "family": "25",
        "model": "17",
        "stepping": "1",
        "cache": "1024 KB",
        "isa": ["avx2", "avx512f", "avx512_bf16"],  # the second processor's amx_tile is not read
    }
    # a Zen 3 VM that reports the same name: family 25, model 1, no AVX-512
    zen3 = cpu_info(
        ZEN4.replace("model\t\t: 17", "model\t\t: 1").replace(" avx512f avx512dq avx512_bf16", "")
    )
    assert (zen3["model"], zen3["isa"]) == ("1", ["avx2"])
    assert zen3["model_name"] == info["model_name"] and zen3 != info


def test_cpu_info_reads_arm_features_and_omits_what_the_kernel_does_not_list() -> None:
    assert cpu_info(ARM) == {"isa": ["asimd", "sve"]}
    assert cpu_info("") == {"isa": []}


def test_cpu_model_is_a_name_on_every_machine() -> None:
    assert isinstance(cpu_model(), str) and cpu_model()
    assert set(cpu_info()) <= {"model_name", "family", "model", "stepping", "cache", "isa"}
