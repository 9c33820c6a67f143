"""torch keeps its own BLAS when the host process already exported one (R does: see fineclass/__init__.py).

Each case runs in a fresh interpreter that first loads the system's reference BLAS into the global symbol scope,
as R does, then imports torch either plainly (the control: torch's products land on the reference BLAS) or
through fineclass (which imports torch with RTLD_DEEPBIND)."""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import ctypes, json, os, sys, time
ctypes.CDLL(sys.argv[1], mode=os.RTLD_GLOBAL)          # what R does with its BLAS
if sys.argv[2] == "fineclass":
    import fineclass
    how = fineclass.TORCH_BLAS
else:
    how = "plain import"
import torch
torch.set_num_threads(1)
a, b = torch.randn(256, 256), torch.randn(256, 256)
a @ b
best = min((lambda t: (a @ b, time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(20))
print(json.dumps({"how": how, "gflops": 2 * 256 ** 3 / best / 1e9}))
"""


def reference_blas():
    name = ctypes.util.find_library("blas")
    if not name or not hasattr(os, "RTLD_DEEPBIND"):
        return None
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    return name if hasattr(lib, "sgemm_") else None


def run(blas: str, how: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, blas, how], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_torch_keeps_its_own_blas_in_a_host_that_exports_one():
    blas = reference_blas()
    if blas is None:
        pytest.skip("no system BLAS exporting sgemm_ (libblas3) to stand in for R's")
    plain = run(blas, "plain")
    guarded = run(blas, "fineclass")
    assert "RTLD_DEEPBIND" in guarded["how"]
    # the control shows the problem is real here (torch's products on the reference BLAS), the guarded
    # import that it is gone: several times the control's rate
    assert guarded["gflops"] > 5 * plain["gflops"], (plain, guarded)


def test_plain_python_is_left_alone():
    out = subprocess.run(
        [sys.executable, "-c", "import sys, fineclass; print(fineclass.TORCH_BLAS); print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    how, imported = out.stdout.split("\n")[:2]
    assert how.startswith("not needed") and imported == "False"
