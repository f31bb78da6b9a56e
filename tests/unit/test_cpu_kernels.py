"""The CPU kernel pins (mtp_bench/cpu_kernels.py): AVX2 on x86-64 CPUs that have it, nothing elsewhere, the user's
own choice left alone, and a fresh process really computing with them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mtp_bench import cpu_kernels


def test_x86_with_avx2_pins_every_library_to_avx2():
    assert cpu_kernels.portable_settings("x86_64", {"sse2", "avx", "avx2", "fma"}) == {
        "ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    # AVX-512 machines are pinned down to AVX2 too: that is the point (the same rounding as AVX2-only machines).
    assert cpu_kernels.portable_settings("AMD64", {"avx2", "avx512f"})["ATEN_CPU_CAPABILITY"] == "avx2"


@pytest.mark.parametrize(("machine", "flags"), [("aarch64", {"asimd"}), ("x86_64", {"sse2", "avx"})])
def test_no_pins_where_avx2_is_not_the_common_level(machine, flags):
    assert cpu_kernels.portable_settings(machine, flags) == {}


def test_pin_keeps_what_the_user_set_and_native_turns_it_off(monkeypatch):
    monkeypatch.setattr(cpu_kernels, "portable_settings", lambda: dict(cpu_kernels.PORTABLE_AVX2))
    environ = {"MKL_CBWR": "COMPATIBLE"}
    added = cpu_kernels.pin(environ)
    assert added == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert environ["MKL_CBWR"] == "COMPATIBLE"
    assert cpu_kernels.pinned_environment(environ) == {**added, "MKL_CBWR": "COMPATIBLE"}
    native = {cpu_kernels.SWITCH: "native"}
    assert cpu_kernels.pin(native) == {} and set(native) == {cpu_kernels.SWITCH}


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\nbugs\t\t: none\n")
    assert cpu_kernels.cpu_flags(info) == {"fpu", "sse2", "avx2", "fma"}
    assert cpu_kernels.cpu_flags(tmp_path / "absent") == set()


@pytest.mark.skipif(not cpu_kernels.portable_settings(), reason="this CPU gets no pins (not x86-64 with AVX2)")
def test_a_fresh_process_computes_with_the_pinned_level():
    """Pinned before torch loads, torch dispatches to its AVX2 kernels (on an AVX-512 machine that is a change; on
    an AVX2 machine, the level it would have chosen)."""
    env = {k: v for k, v in os.environ.items() if k not in cpu_kernels.RECORDED}
    code = ("from mtp_bench.cpu_kernels import pin; pin(); import os, torch; "
            "print(torch.backends.cpu.get_cpu_capability(), os.environ['MKL_CBWR'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["AVX2", "AVX2"]
