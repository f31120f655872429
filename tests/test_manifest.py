import json
import shutil
from collections import Counter

import pyarrow.parquet as pq
import pytest
from build_fixture import make_release

from sarlang_data import schema
from sarlang_data.cli import main as cli_main
from sarlang_data.errors import ConfigError, ManifestError, VerifyError
from sarlang_data.format.card import card_text, write_card
from sarlang_data.format.manifest import manifest_bytes, read_manifest, select_shards
from sarlang_data.format.stats import format_stats, stats
from sarlang_data.format.verify import verify
from sarlang_data.ingest.build import BuildOptions, build


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    fx = make_release(tmp_path_factory.mktemp("release"))
    root = tmp_path_factory.mktemp("root") / "root"
    build(fx["release"], root, BuildOptions(workers=1, max_reject_rate=0.2), progress=False)
    return root


@pytest.fixture
def root(built, tmp_path):
    out = tmp_path / "root"
    shutil.copytree(built, out)
    return out


def manifest_of(root):
    return json.loads((root / "manifest.json").read_text())


# --------------------------------------------------------------------------- read_manifest


def test_read_manifest_local_and_url(built):
    m = read_manifest(built)
    assert m == manifest_of(built)
    assert read_manifest(f"file://{built}") == m
    assert read_manifest(str(built) + "/") == m
    assert (built / "manifest.json").read_bytes() == manifest_bytes(m)
    assert (built / "manifest.json").read_text().endswith("}\n")


def test_read_manifest_missing(tmp_path):
    with pytest.raises(ManifestError, match=r"no manifest\.json.*sarlang-data build RELEASE "
                       r"--out ROOT.*sarlang-data download"):
        read_manifest(tmp_path)


def test_read_manifest_newer_version(root):
    m = manifest_of(root)
    m["format_version"] = schema.FORMAT_VERSION + 1
    (root / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match=rf"format_version={schema.FORMAT_VERSION + 1} is "
                       r"newer.*upgrade"):
        read_manifest(root)


@pytest.mark.parametrize("edit,match", [
    (lambda m: "not json{", r"not valid JSON"),
    (lambda m: [], r"top level is a list"),
    (lambda m: {**m, "format": "other"}, r"format='other'"),
    (lambda m: {k: v for k, v in m.items() if k != "shards"}, r"key 'shards' is missing"),
    (lambda m: {**m, "counts": {**m["counts"], "qa": "many"}}, r"counts\.qa"),
    (lambda m: {**m, "shards": [{**m["shards"][0], "path": "../../etc/passwd"}]},
     r"shards\[0\]\.path='\.\./\.\./etc/passwd'"),
    (lambda m: {**m, "shards": [m["shards"][0], m["shards"][0]]}, r"listed twice"),
    (lambda m: {**m, "shards": [{**m["shards"][0], "samples": None}]}, r"shards\[0\]\.samples"),
])
def test_read_manifest_malformed(root, edit, match):
    new = edit(manifest_of(root))
    (root / "manifest.json").write_text(new if isinstance(new, str) else json.dumps(new))
    with pytest.raises(ManifestError, match=match):
        read_manifest(root)


# --------------------------------------------------------------------------- select_shards


def test_select_shards_prunes(built):
    m = read_manifest(built)
    shards = m["shards"]
    assert select_shards(m) == shards
    got = select_shards(m, splits=["train"], tiers="vhr")
    assert got == [s for s in shards if s["split"] == "train" and s["tier"] == "vhr"]
    assert {s["cities"][0] for s in got} == {"nice", "rotterdam"}
    assert [s["cities"] for s in select_shards(m, cities=["New York"], splits="test")] == [
        ["newyork"]]
    assert {s["sources"][0] for s in select_shards(m, sources=["sardet100k"])} == {"sardet100k"}
    assert all(s["cities"] == ["unlocated"] for s in select_shards(m, sources="sardet100k"))
    assert select_shards(m, tiers=["mr"]) == []  # a valid tier this root lacks
    assert sum(s["samples"] for s in select_shards(m, splits=["train", "test"])) == (
        m["counts"]["samples"])


@pytest.mark.parametrize("kwargs,match", [
    ({"cities": ["roterdam"]}, r"cities='roterdam': unknown city; valid city names \(closest "
                               r"first\): rotterdam"),
    ({"tiers": ["vhr", "lr"]}, r"tiers='lr': unknown tier.*vhr.*hr.*mr|tiers='lr'.*hr"),
    ({"splits": "validation"}, r"splits='validation': unknown split.*test.*train|"
                               r"splits='validation'.*train"),
    ({"sources": ["sardet"]}, r"sources='sardet': unknown source; valid source names "
                              r"\(closest first\): sardet100k"),
])
def test_select_shards_unknown_names(built, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        select_shards(read_manifest(built), **kwargs)


# --------------------------------------------------------------------------- verify


def test_verify_ok(built):
    m = manifest_of(built)
    assert verify(built) == {"shards": len(m["shards"]), "samples": m["counts"]["samples"],
                             "images": m["counts"]["samples"]}
    assert verify(built, check_images=False)["images"] == 0
    assert verify(f"file://{built}")["samples"] == m["counts"]["samples"]
    assert cli_main(["verify", str(built)]) == 0


def _biggest(m):
    return max(m["shards"], key=lambda s: s["bytes"])


def test_verify_flipped_byte_in_an_image(root, capsys):
    m = manifest_of(root)
    shard = _biggest(m)
    rows = [r for r in pq.read_table(root / "index.parquet").to_pylist()
            if r["shard"] == shard["path"]]
    row = rows[-1]
    path = root / shard["path"]
    data = bytearray(path.read_bytes())
    data[row["image_offset"] + row["image_size"] // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(VerifyError) as e:
        verify(root)
    msg = str(e.value)
    assert f"{shard['path']}: sha256 expected {shard['sha256']} (manifest), found " in msg
    assert f"image {row['key']}.{row['image_ext']} sha256 expected {row['image_sha256']}" in msg
    with pytest.raises(VerifyError) as e:
        verify(root, check_images=False)
    assert "sha256 expected" in str(e.value) and "image " not in str(e.value)
    assert cli_main(["verify", str(root)]) == 2
    assert shard["path"] in capsys.readouterr().err


def test_verify_truncated_shard(root):
    m = manifest_of(root)
    shard = _biggest(m)
    path = root / shard["path"]
    path.write_bytes(path.read_bytes()[: shard["bytes"] // 2])
    with pytest.raises(VerifyError, match=rf"{shard['path']}: size expected {shard['bytes']} "
                       rf"bytes \(manifest\), found {shard['bytes'] // 2}"):
        verify(root)


def test_verify_missing_shard(root):
    m = manifest_of(root)
    shard = m["shards"][0]
    (root / shard["path"]).unlink()
    with pytest.raises(VerifyError, match=rf"1 problem\(s\):\n  {shard['path']}: missing "
                       rf"\(expected {shard['bytes']} bytes, sha256 {shard['sha256']}\)"):
        verify(root)


def test_verify_swapped_shards(root):
    """Same sizes and valid tars, but each holds the other's samples."""
    m = manifest_of(root)
    a, b = next((a, b) for i, a in enumerate(m["shards"]) for b in m["shards"][i + 1:]
                if a["bytes"] == b["bytes"])
    pa, pb = root / a["path"], root / b["path"]
    da, db = pa.read_bytes(), pb.read_bytes()
    pa.write_bytes(db)
    pb.write_bytes(da)
    with pytest.raises(VerifyError) as e:
        verify(root)
    msg = str(e.value)
    assert f"{a['path']}: sha256 expected {a['sha256']}" in msg
    assert "sample keys differ from index.parquet" in msg


def test_verify_index_tampered(root):
    m = manifest_of(root)
    (root / "index.parquet").write_bytes((root / "index.parquet").read_bytes() + b"x")
    with pytest.raises(VerifyError, match=rf"index\.parquet: sha256 expected "
                       rf"{m['index']['sha256']} \(manifest\), found"):
        verify(root)


# --------------------------------------------------------------------------- stats, card


def test_stats_from_index(built):
    st = stats(built)
    m = manifest_of(built)
    index = pq.read_table(built / "index.parquet").to_pylist()
    assert (st["samples"], st["captions"], st["qa"]) == (
        m["counts"]["samples"], m["counts"]["captions"], m["counts"]["qa"])
    for dim in ("split", "tier", "city", "source"):
        assert {k: v["samples"] for k, v in st[f"by_{dim}"].items()} == dict(
            Counter(r[dim] for r in index))
        assert sum(v["qa"] for v in st[f"by_{dim}"].values()) == m["counts"]["qa"]
    for task in schema.TASKS:
        assert st["tasks"][task] == m["configs"][task]
    for kind in schema.CAPTION_KINDS:
        assert st["caption_kinds"][kind] == m["configs"][f"captions_{kind}"]
    text = format_stats(st)
    assert f"{st['samples']:,} samples" in text
    for heading in ("by split", "by tier", "by city", "by source", "by task", "by caption kind"):
        assert heading in text
    assert "rotterdam" in text and "object_identification" in text
    assert json.loads(json.dumps(st)) == st


def test_stats_does_not_open_shards(root):
    shutil.rmtree(root / "data")
    assert stats(root)["samples"] == manifest_of(root)["counts"]["samples"]


def test_card(root):
    before = (root / "README.md").read_bytes()
    (root / "README.md").unlink()
    assert write_card(root) == root / "README.md"
    assert (root / "README.md").read_bytes() == before
    m = manifest_of(root)
    text = card_text(m)
    import yaml

    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["license"] == "other" and meta["tags"] == ["sar", "remote-sensing"]
    assert meta["task_categories"] == ["image-to-text", "visual-question-answering"]
    names = [c["config_name"] for c in meta["configs"]]
    assert names == ["images", "vhr", "hr"]  # no mr shards in this root
    assert meta["configs"][0]["default"] is True
    assert {f["split"]: f["path"] for f in meta["configs"][1]["data_files"]} == {
        "train": "data/train/vhr/*/*.tar", "test": "data/test/vhr/*/*.tar"}
    for info in meta["dataset_info"]:
        names = [f["name"] for f in info["features"]]
        assert names == ["__key__", "__url__", "json", "png", "jpg"]
    for name in ("captions_concise", "vqa", "chat"):
        rows = m["configs"][name]
        assert f"| `{name}` |" in text and f"| {rows['train']:,} | {rows['test']:,} |" in text
    with pytest.raises(ManifestError):
        write_card(root / "nowhere")
