"""Model source URIs: parsing (pure) and resolution against real local directories."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from slm_serving.model_source import (
    ModelSourceError,
    ParsedSource,
    download_dir,
    ensure_model_path,
    fetch_remote,
    parse_source,
    pvc_path,
)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("tiny://good", ParsedSource("tiny", "good")),
        ("hf://org/name", ParsedSource("hf", "org/name")),
        ("file:///models/x", ParsedSource("file", "/models/x")),
        ("/models/x", ParsedSource("file", "/models/x")),
        ("./models/x", ParsedSource("file", "./models/x")),
        ("pvc://claim/sub/dir", ParsedSource("pvc", "claim/sub/dir")),
        ("s3://bucket/key", ParsedSource("s3", "bucket/key")),
        ("gs://bucket/key", ParsedSource("gs", "bucket/key")),
    ],
)
def test_parse(source: str, expected: ParsedSource) -> None:
    assert parse_source(source) == expected


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("ftp://x/y", "unsupported"),
        ("models/x", "unsupported"),
        ("tiny://medium", "tiny://good, tiny://bad, tiny://slow, tiny://lora-good, tiny://lora-bad"),
        ("tiny://lora-slow", "unknown tiny model"),
        ("hf://justname", "hf://org/name"),
        ("s3://", "names nothing"),
    ],
)
def test_parse_rejects(source: str, fragment: str) -> None:
    with pytest.raises(ModelSourceError, match=re.escape(fragment)):
        parse_source(source)


def test_pvc_path_maps_under_the_mount_root() -> None:
    assert pvc_path("claim/sub/dir", Path("/mnt/models")) == Path("/mnt/models/claim/sub/dir")
    assert pvc_path("claim", Path("/mnt/models")) == Path("/mnt/models/claim")


def test_local_and_pvc_sources_must_exist(tmp_path: Path) -> None:
    (tmp_path / "claim" / "m").mkdir(parents=True)
    assert ensure_model_path(f"file://{tmp_path}") == str(tmp_path)
    assert ensure_model_path(str(tmp_path)) == str(tmp_path)
    assert ensure_model_path("pvc://claim/m", pvc_root=tmp_path) == str(tmp_path / "claim" / "m")
    with pytest.raises(ModelSourceError, match="does not exist"):
        ensure_model_path(f"file://{tmp_path}/missing")
    with pytest.raises(ModelSourceError, match="does not exist"):
        ensure_model_path("pvc://claim/missing", pvc_root=tmp_path)


def test_hf_source_is_passed_to_vllm_as_a_repo_id() -> None:
    assert ensure_model_path("hf://org/name") == "org/name"


def test_download_dir_is_stable_and_distinct(tmp_path: Path) -> None:
    a = download_dir("s3://bucket/models/llama", tmp_path)
    assert a == download_dir("s3://bucket/models/llama", tmp_path)
    assert a != download_dir("gs://bucket/models/llama", tmp_path)
    assert a.name.startswith("llama-")


def test_fetch_remote_copies_once_through_fsspec(tmp_path: Path) -> None:
    """fsspec's local `file://` filesystem stands in for s3/gs (no network here); same code path."""
    source = tmp_path / "remote"
    (source / "sub").mkdir(parents=True)
    (source / "config.json").write_text("{}")
    (source / "sub" / "w.bin").write_bytes(b"123")
    target = tmp_path / "cache" / "m"
    assert fetch_remote(f"file://{source}", target) == target
    assert (target / "config.json").read_text() == "{}"
    assert (target / "sub" / "w.bin").read_bytes() == b"123"
    (source / "config.json").write_text("changed")
    fetch_remote(f"file://{source}", target)  # a finished copy is reused, not fetched again
    assert (target / "config.json").read_text() == "{}"


def test_fetch_remote_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match=r"does not exist|empty"):
        fetch_remote(f"file://{tmp_path}/nothing", tmp_path / "cache" / "m")
    assert not (tmp_path / "cache" / "m").exists()


def test_remote_scheme_without_its_package_says_which_package() -> None:
    pytest.importorskip("fsspec")
    try:
        import s3fs  # noqa: F401
    except ImportError:
        with pytest.raises(ModelSourceError, match="s3fs"):
            fetch_remote("s3://bucket/model", Path("/nonexistent-cache/m"), timeout_s=5)
    else:
        pytest.skip("s3fs is installed: the missing-package message cannot be shown")
