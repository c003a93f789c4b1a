"""Pytest entry points of the command-path GPU programs (built with UCCL_EP_BUILD_BENCH):
``uccl_ep_command_path_gpu_test`` (ipc GPU 0 -> GPU 1, libfabric with host-pinned buffers,
back-pressure, deadlines) and a quick run of ``uccl_ep_proxy_gpu_bench``. Skips without a GPU
or without the binaries. The binaries are looked up in $UCCL_EP_BUILD_DIR, then build/gpu,
build/ci and any build/*."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SKIPPED = 77  # the programs' exit status without a CUDA device
DEADLINE_SECS = 900


def find_binary(name: str) -> pathlib.Path:
    dirs = []
    if os.environ.get("UCCL_EP_BUILD_DIR"):
        dirs.append(pathlib.Path(os.environ["UCCL_EP_BUILD_DIR"]))
    dirs += [ROOT / "build" / "gpu", ROOT / "build" / "ci"]
    dirs += sorted(p for p in (ROOT / "build").glob("*") if p.is_dir())
    for d in dirs:
        path = d / "src" / "proxy" / name
        if path.is_file() and os.access(path, os.X_OK):
            return path
    pytest.skip(f"{name} not built (configure with -DUCCL_EP_BUILD_BENCH=ON)")


def run(cmd: list, what: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.setdefault("NCCL_NVLS_ENABLE", "0")
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=DEADLINE_SECS, env=env, cwd=ROOT
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{what} did not finish within {DEADLINE_SECS} s:\n{e.stdout}\n{e.stderr}")
    print(out.stdout)
    print(out.stderr)
    if out.returncode == SKIPPED:
        pytest.skip(f"{what}: no CUDA device")
    return out


def test_command_path_gpu_program():
    out = run([str(find_binary("uccl_ep_command_path_gpu_test"))], "the command-path GPU test")
    failures = [line for line in out.stdout.splitlines() if line.startswith("FAIL")]
    assert out.returncode == 0 and not failures, "\n".join(failures) or out.stderr[-3000:]
    assert "PASS" in out.stdout, "no scenario ran"


def test_proxy_gpu_bench_quick(tmp_path):
    json_path = tmp_path / "proxy_gpu.json"
    binary = find_binary("uccl_ep_proxy_gpu_bench")
    out = run([str(binary), "--quick", "--json", str(json_path)], "the proxy GPU benchmark")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert json_path.exists()
