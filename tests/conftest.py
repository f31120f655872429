"""Shared fixtures: a seeded synthetic release, a dataset root built from it, tar helpers.

- ``synth_tiny``: the folder ``synth.generate(..., preset="tiny", seed=0)`` wrote (holds
  ``SARLANG_1M/``, ``truth/`` and ``gsd_table.csv``); session-wide, treat it as read-only.
- ``tiny_root``: a dataset root built from it with ``build(...)``; session-wide, read-only.
  Tests that damage files copy it first (``copy_root``).
- ``write_tar`` / ``tar_members``: write and read plain ustar tars with the standard library,
  independently of the package's own writer and reader.
"""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synth_tiny(tmp_path_factory) -> Path:
    from sarlang_data.ingest import synth

    out = tmp_path_factory.mktemp("synth") / "syn"
    synth.generate(out, preset="tiny", seed=0, progress=False, workers=1)
    return out


@pytest.fixture(scope="session")
def tiny_root(synth_tiny, tmp_path_factory) -> Path:
    from sarlang_data.ingest.build import BuildOptions, build

    root = tmp_path_factory.mktemp("roots") / "tiny"
    build(synth_tiny / "SARLANG_1M", root,
          BuildOptions(gsd_table=synth_tiny / "gsd_table.csv", workers=1), progress=False)
    return root


@pytest.fixture
def copy_root(tiny_root, tmp_path):
    """Return a function making a private copy of the tiny root (to damage or rewrite)."""

    def copy(name: str = "root") -> Path:
        dest = tmp_path / name
        shutil.copytree(tiny_root, dest)
        return dest

    return copy


def _write_tar(path: Path, members: list[tuple[str, bytes]], compress: bool = False) -> Path:
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    raw = bio.getvalue()
    if compress:
        import zstandard

        raw = zstandard.ZstdCompressor(level=3).compress(raw)
    Path(path).write_bytes(raw)
    return Path(path)


def _tar_members(path: Path) -> list[tuple[str, bytes]]:
    raw = Path(path).read_bytes()
    if str(path).endswith(".zst"):
        import zstandard

        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
        return [(m.name, tf.extractfile(m).read()) for m in tf.getmembers() if m.isfile()]


@pytest.fixture
def write_tar():
    """``write_tar(path, [(name, bytes), ...], compress=False)``: a ustar tar via ``tarfile``."""
    return _write_tar


@pytest.fixture
def tar_members():
    """``tar_members(path) -> [(name, bytes), ...]`` of a tar or tar.zst, via ``tarfile``."""
    return _tar_members


# ----------------------------------------------------------------------- real servers
# Session-wide, started on first use and stopped at the end (see tests/servers.py).


@pytest.fixture(scope="session")
def big_root(tmp_path_factory) -> Path:
    """A root built from the ``preview`` preset at 256 px: 52 shards, the largest ~1.5 MB.

    Its largest shard is bigger than one remote read (1 MiB), so a test can see the first
    row arrive before that shard is read through.
    """
    from build_fixture import synth_root

    return synth_root(tmp_path_factory.mktemp("big"), preset="preview", seed=0, image_size=256)


@pytest.fixture(scope="session")
def served_dir(tiny_root, big_root, tmp_path_factory) -> Path:
    """A folder with ``tiny/`` (the tiny root) and ``big/`` (:func:`big_root`), as symlinks."""
    served = tmp_path_factory.mktemp("served")
    (served / "tiny").symlink_to(tiny_root, target_is_directory=True)
    (served / "big").symlink_to(big_root, target_is_directory=True)
    return served


@pytest.fixture(scope="session")
def http_server(served_dir, tmp_path_factory):
    """nginx serving :func:`served_dir` (``.url + "tiny"`` is the tiny root)."""
    import servers

    with servers.start_nginx(served_dir, tmp_path_factory.mktemp("nginx")) as srv:
        yield srv


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """SeaweedFS with an S3 gateway and one bucket (credentials in ``.storage_options``)."""
    import servers

    with servers.start_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as srv:
        yield srv


@pytest.fixture(scope="session")
def s3_tiny_root(s3_server, tiny_root) -> str:
    """The tiny root uploaded to ``s3://BUCKET/tiny``."""
    import servers

    return servers.upload_tree(s3_server, tiny_root, "tiny")


@pytest.fixture(scope="session")
def s3_big_root(s3_server, big_root) -> str:
    """The big root uploaded to ``s3://BUCKET/big``."""
    import servers

    return servers.upload_tree(s3_server, big_root, "big")


@pytest.fixture(scope="session")
def olah_server(served_dir, tmp_path_factory):
    """olah serving :func:`served_dir` as the Hub dataset ``sarlang/preview``.

    ``.root_url + "/tiny"`` is the tiny root (``hf://datasets/sarlang/preview@main/tiny``).
    """
    import servers

    with servers.start_olah(tmp_path_factory.mktemp("olah"), served_dir) as srv:
        yield srv
