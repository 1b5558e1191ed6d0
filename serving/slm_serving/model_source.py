"""Model source URIs (`EngineConfig.source`) → what vLLM's `model` argument takes.

| source                  | resolves to                                                     |
|-------------------------|-----------------------------------------------------------------|
| `tiny://good`, `bad`    | the built tiny model's directory (built on first use)           |
| `tiny://slow`           | `tiny://good`'s directory; the engine paces its answers (a test fixture) |
| `tiny://lora-good`, `…bad` | a built tiny LoRA adapter's directory (on `tiny://good`)     |
| `file://p`, `/p`, `./p` | the local directory `p` (must exist)                            |
| `pvc://claim/path`      | `/mnt/models/<claim>/<path>` (where the operator mounts PVCs)   |
| `hf://org/name`         | the repo id `org/name`: vLLM downloads it (token from HF_TOKEN) |
| `s3://…`, `gs://…`      | a copy under `<cache>/downloads/…`, made with fsspec            |

`parse_source` is pure; `ensure_model_path` does the I/O. Every failure is a `ModelSourceError`.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from slm_serving.tiny_adapters import AdapterVariant, ensure_tiny_adapter
from slm_serving.tiny_models import SLOW_SOURCE, Variant, default_cache_dir, ensure_tiny_model

PVC_MOUNT_ROOT = Path("/mnt/models")
"""Where the operator mounts a `pvc://claim/...` source's PersistentVolumeClaim: `<root>/<claim>`."""

DOWNLOAD_TIMEOUT_S = 1800.0
"""Whole-download deadline for s3:// and gs:// sources."""

_REMOTE_FS_PACKAGES = {"s3": "s3fs", "gs": "gcsfs"}
_TINY_MODELS = ("good", "bad")
_TINY_SLOW = SLOW_SOURCE.removeprefix("tiny://")
_TINY_ADAPTER_PREFIX = "lora-"
TINY_SOURCES = (*_TINY_MODELS, _TINY_SLOW, *(_TINY_ADAPTER_PREFIX + v for v in _TINY_MODELS))
"""What may follow `tiny://`: the two tiny models, the slow fixture and the two tiny LoRA adapters."""

Scheme = Literal["tiny", "file", "pvc", "hf", "s3", "gs"]


class ModelSourceError(Exception):
    """A model source that is malformed, missing or cannot be fetched; the message says which."""


@dataclass(frozen=True)
class ParsedSource:
    scheme: Scheme
    location: str
    """Scheme-specific rest: tiny variant, local path, `claim/path`, repo id or `bucket/key`."""


def parse_source(source: str) -> ParsedSource:
    """Split a source URI; plain paths (`/p`, `./p`) count as `file`."""
    if source.startswith(("/", "./")):
        return ParsedSource("file", source)
    scheme, sep, rest = source.partition("://")
    if not sep or scheme not in ("tiny", "file", "pvc", "hf", "s3", "gs"):
        raise ModelSourceError(
            f"unsupported model source {source!r}: use hf://, s3://, gs://, pvc://, file://, tiny:// or a path"
        )
    if not rest.strip("/"):
        raise ModelSourceError(f"model source {source!r} names nothing after {scheme}://")
    if scheme == "tiny" and rest not in TINY_SOURCES:
        raise ModelSourceError(f"unknown tiny model {source!r}: use one of {_tiny_choices()}")
    if scheme == "hf" and rest.count("/") != 1:
        raise ModelSourceError(f"hf:// source {source!r} must name a repository as hf://org/name")
    return ParsedSource(cast(Scheme, scheme), rest)


def pvc_path(location: str, root: Path = PVC_MOUNT_ROOT) -> Path:
    claim, _, path = location.partition("/")
    return root / claim / path if path else root / claim


def download_dir(url: str, cache_dir: Path) -> Path:
    """Stable cache directory for a remote source (readable name plus a hash of the full URL)."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    tail = url.rstrip("/").rsplit("/", 1)[-1] or "model"
    return cache_dir / "downloads" / f"{tail}-{digest}"


def ensure_model_path(source: str, cache_dir: Path | None = None, *, pvc_root: Path = PVC_MOUNT_ROOT) -> str:
    """What to pass to vLLM as `model` (or a LoRA adapter's path) for `source`; fetches if needed."""
    parsed = parse_source(source)
    cache = cache_dir or default_cache_dir()
    if parsed.scheme == "tiny" and parsed.location.startswith(_TINY_ADAPTER_PREFIX):
        variant = parsed.location.removeprefix(_TINY_ADAPTER_PREFIX)
        return str(ensure_tiny_adapter(cast(AdapterVariant, variant), cache))
    if parsed.scheme == "tiny" and parsed.location == _TINY_SLOW:
        return str(ensure_tiny_model("good", cache))
    if parsed.scheme == "tiny":
        return str(ensure_tiny_model(cast(Variant, parsed.location), cache))
    if parsed.scheme == "hf":
        return parsed.location
    if parsed.scheme == "file":
        return str(_existing_dir(Path(parsed.location), source))
    if parsed.scheme == "pvc":
        return str(_existing_dir(pvc_path(parsed.location, pvc_root), source))
    return str(fetch_remote(source, download_dir(source, cache)))


def _existing_dir(path: Path, source: str) -> Path:
    if not path.exists():
        raise ModelSourceError(f"model source {source!r}: {path} does not exist")
    return path


def fetch_remote(url: str, target: Path, *, timeout_s: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Copy a remote directory (any fsspec URL) to `target` once; a finished copy is reused."""
    done_marker = target / ".slm-download-complete"
    if done_marker.is_file():
        return target
    filesystem, root = _filesystem(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        future = pool.submit(filesystem.get, root.rstrip("/") + "/", str(staging), recursive=True)
        future.result(timeout=timeout_s)
        if not any(staging.iterdir()):
            raise ModelSourceError(f"model source {url!r} is empty or does not exist")
        (staging / done_marker.name).touch()
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except concurrent.futures.TimeoutError as exc:
        raise ModelSourceError(f"downloading {url!r} took longer than {timeout_s:.0f}s") from exc
    except FileNotFoundError as exc:
        raise ModelSourceError(f"model source {url!r} does not exist") from exc
    except PermissionError as exc:
        raise ModelSourceError(f"model source {url!r}: access denied ({exc})") from exc
    except OSError as exc:
        raise ModelSourceError(f"downloading {url!r} failed: {exc}") from exc
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _filesystem(url: str) -> tuple[Any, str]:
    """fsspec filesystem for `url` (imported lazily: only s3/gs sources need it)."""
    try:
        import fsspec
    except ImportError as exc:
        raise ModelSourceError(f"model source {url!r} needs the fsspec package") from exc
    scheme = url.partition("://")[0]
    try:
        return cast(tuple[Any, str], fsspec.core.url_to_fs(url))
    except ImportError as exc:
        package = _REMOTE_FS_PACKAGES.get(scheme, f"the fsspec backend for {scheme}://")
        raise ModelSourceError(f"model source {url!r} needs the {package} package installed") from exc
    except ValueError as exc:
        raise ModelSourceError(f"model source {url!r}: {exc}") from exc


def _tiny_choices() -> str:
    return ", ".join(f"tiny://{name}" for name in TINY_SOURCES)
