"""GPU check for gitexp.monitor on a machine with an NVIDIA GPU (run there, not in CI).

Needs nvidia-ml-py (pip install 'gitexp[gpu]') and torch with CUDA. It allocates ~1 GiB on
GPU 0 in a child process, samples with gitexp.monitor.Sampler, and checks that the GPU fields
are there, that the child's memory is attributed to the run (gpuN_mem_run), and that a
resource sample costs well under 1% of a core at one per 5 s. Prints one RESULT line; exit 1
on a failed check.

Usage: python bench/gpu_check.py
"""
from __future__ import annotations

import subprocess
import sys
import time

CHILD = ("import torch, time; x = torch.empty(2**28, device='cuda:0'); torch.cuda.synchronize(); "
         "print('ready', flush=True); t = time.time()\nwhile time.time() - t < 20: x.mul_(1.0001)")


def main() -> int:
    sys.path.insert(0, ".")
    from gitexp import monitor

    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        sampler = monitor.Sampler(child.pid, ".")
        if not sampler.gpus.available:
            print("RESULT gpu=absent (pynvml missing or no driver)")
            return 1
        sampler.sample()
        time.sleep(2)
        start = time.process_time()
        for _ in range(20):
            sample = sampler.sample()
        cost = (time.process_time() - start) / 20
    finally:
        child.kill()
        child.wait()
    gpu_keys = sorted(k for k in sample if k.startswith("gpu"))
    run_mem = sample.get("gpu0_mem_run", 0)
    ok = "gpu0_util" in sample and "gpu0_mem_total" in sample and run_mem >= 2**30 and cost < 0.05
    print(f"RESULT ok={ok} sample_cpu_s={cost:.4f} share_at_5s={100 * cost / 5:.3f}% gpu0_util={sample.get('gpu0_util')} "
          f"gpu0_mem_run={run_mem / 2**30:.2f}GiB fields={','.join(gpu_keys)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
