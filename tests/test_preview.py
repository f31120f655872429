"""The bundled preview in shards/ is exactly what the code builds from the seed."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

from sarlang_data.configs import CONFIGS
from sarlang_data.schema import SOURCES, TASKS, TIERS

REPO = Path(__file__).resolve().parent.parent
SHARDS = REPO / "shards"


def _files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def _load_script():
    script = REPO / "scripts" / "build_preview.py"
    spec = importlib.util.spec_from_file_location("build_preview", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_preview_is_byte_identical_to_a_rebuild(tmp_path):
    _load_script().build_preview(tmp_path / "rebuilt")
    assert _files(tmp_path / "rebuilt") == _files(SHARDS)


def test_preview_covers_the_catalogue_and_stays_small():
    m = json.loads((SHARDS / "manifest.json").read_text())
    total = sum(p.stat().st_size for p in SHARDS.rglob("*") if p.is_file())
    assert total <= 6 * 10**6, total
    assert 150 <= m["counts"]["samples"] <= 260
    assert 2000 <= m["counts"]["captions"] + m["counts"]["qa"] <= 3200
    shards = m["shards"]
    assert {s["split"] for s in shards} == {"train", "test"}
    assert {s["tier"] for s in shards} == set(TIERS)
    assert set().union(*(s["sources"] for s in shards)) == set(SOURCES)
    assert len(set().union(*(s["cities"] for s in shards))) >= 8
    for name in CONFIGS:  # every config, hence every task and caption kind, has rows
        assert sum(m["configs"][name].values()) > 0, name
    assert set(TASKS) <= set(m["configs"])


def test_a_wheel_carries_the_whole_preview(tmp_path):
    """A non-editable install gets every module, and shards/ as sarlang_data/_preview."""
    import shutil
    import subprocess
    import sys
    import zipfile

    # build from a copy: setuptools keeps a build/ folder in the source tree, whose stale
    # modules (from before a file moved) would land in the wheel
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "sarlang_data", "shards"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(REPO / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                          if (REPO / name).is_dir() else {}))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(src)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("sarlang_data-*.whl")
    prefix = "sarlang_data/_preview/"
    with zipfile.ZipFile(wheel) as z:
        packed = {
            n[len(prefix):]: hashlib.sha256(z.read(n)).hexdigest()
            for n in z.namelist() if n.startswith(prefix) and not n.endswith("/")
        }
    assert packed == _files(SHARDS)
    # and every module of the package, subpackages included, byte for byte
    with zipfile.ZipFile(wheel) as z:
        modules = {n: hashlib.sha256(z.read(n)).hexdigest()
                   for n in z.namelist() if n.endswith(".py") and not n.startswith(prefix)}
    on_disk = {str(p.relative_to(REPO)): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in (REPO / "sarlang_data").rglob("*.py")}
    assert modules == on_disk
