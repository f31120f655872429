"""Launch a script in 2 real processes with ``torchrun`` (gloo, CPU) and collect their reports.

The one launcher of the multi-process tests: every training stack's test runs
``tests/rank_worker.py STACK ...`` through :func:`torchrun`, in the project's venv or a side
venv (LLaMA-Factory's), and reads back what each rank saw. Each rank writes
``OUT/rank{RANK}.json``; a rank that fails or hangs fails the test with its output.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

WORLD = 2
WORKER = Path(__file__).with_name("rank_worker.py")
#: environment variables of a launcher or a cluster that must not leak into the children
_CLEAN = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE",
          "GROUP_RANK", "TORCHELASTIC_RUN_ID", "ACCELERATE_DISPATCH_BATCHES",
          "ACCELERATE_USE_CPU")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: offline, one thread, no launcher variables, plus ``env``."""
    out = {k: v for k, v in os.environ.items() if k not in _CLEAN}
    out.update({"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
                "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "PYTHONHASHSEED": "0", "WANDB_DISABLED": "true", **(env or {})})
    return out


def torchrun(out: Path, args: list[str], *, python: str = sys.executable,
             env: dict[str, str] | None = None, timeout: float = 240) -> list[dict]:
    """Run ``rank_worker.py ARGS`` in WORLD processes; return each rank's JSON report."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [python, "-m", "torch.distributed.run", f"--nproc_per_node={WORLD}", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", "--max_restarts=0",
           str(WORKER), "--out", str(out), *args]
    proc = subprocess.run(cmd, env=child_env(env), capture_output=True, text=True,
                          timeout=timeout, cwd=out)
    if proc.returncode != 0:
        raise AssertionError(f"torchrun failed ({proc.returncode}): {' '.join(args)}\n"
                             f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n"
                             f"{proc.stderr[-8000:]}")
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]


def ident(row: dict) -> int:
    """A 63-bit id of a row's content (images left out), the same in every process."""
    text = json.dumps({k: v for k, v in row.items() if k not in ("image", "images")},
                      sort_keys=True, default=str)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1
