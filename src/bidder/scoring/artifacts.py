"""Reading model artifacts as SageMaker stores them, without ever running their code.

A model path is a SageMaker `model.tar.gz`, a directory (what SageMaker unpacks into
`/opt/ml/model`) or a single model file. Inside, the model file's format is recognised from
its bytes, not its name:

- a pickled XGBoost `Booster` (the built-in XGBoost containers up to 1.0-1): the pickle
  stream is *disassembled* with `pickletools`, which only reads opcodes, and the booster's
  raw bytes are taken from it; nothing is unpickled, so a hostile file cannot run code;
- XGBoost's legacy binary format (with or without the `CONFIG-offset:` header of 1.0);
- XGBoost JSON and UBJSON;
- LightGBM's text format.

All are parsed by treelite, whose parsers build trees and nothing else. A feature spec
(`feature_spec.json`) travels in the same archive or directory when there is one.
"""

from __future__ import annotations

import hashlib
import io
import pickletools
import struct
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import treelite

from bidder.errors import ModelLoadError
from bidder.features.spec import FEATURE_SPEC_FILENAME

ModelFormat = Literal[
    "xgboost-pickle", "xgboost-legacy-binary", "xgboost-json", "xgboost-ubjson", "lightgbm-text"
]

# A model archive larger than this is refused rather than read into memory.
MAX_ARTIFACT_BYTES: Final = 512 * 1024 * 1024

_CONFIG_PREFIX: Final = b"CONFIG-offset:"
_PICKLE_GLOBALS_ALLOWED: Final = {
    ("xgboost.core", "Booster"),
    ("builtins", "bytearray"),
    ("__builtin__", "bytearray"),
    ("copy_reg", "_reconstructor"),
    ("copyreg", "_reconstructor"),
    ("__builtin__", "object"),
    ("builtins", "object"),
    ("_codecs", "encode"),
}


@dataclass(frozen=True)
class ModelArtifact:
    """A parsed model and what came with it."""

    model: Any  # treelite.Model; treelite ships no type information
    format: ModelFormat
    source: str
    member: str
    sha256: str
    feature_spec: bytes | None

    @property
    def version(self) -> str:
        """A short content hash: equal models have equal versions, wherever they are stored."""
        return self.sha256[:12]

    @property
    def num_features(self) -> int:
        return int(self.model.num_feature)


def load_model_artifact(path: str | Path) -> ModelArtifact:
    """Load the model at `path` (a `.tar.gz`, a directory or a model file)."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model path {path} does not exist")
    files = _read_files(path)
    spec = files.pop(FEATURE_SPEC_FILENAME, None)
    candidates = {name: data for name, data in files.items() if _looks_like_model(name)}
    if not candidates:
        listed = ", ".join(sorted(files)) or "nothing"
        raise ModelLoadError(f"{path}: no model file found (it holds {listed})")
    if len(candidates) > 1:
        raise ModelLoadError(f"{path}: several model files ({', '.join(sorted(candidates))})")
    member, data = next(iter(candidates.items()))
    model_format, payload = identify(data, origin=f"{path}:{member}")
    model = _parse(model_format, payload, origin=f"{path}:{member}")
    return ModelArtifact(
        model=model,
        format=model_format,
        source=str(path),
        member=member,
        sha256=hashlib.sha256(data).hexdigest(),
        feature_spec=spec,
    )


def bundled_feature_spec(path: str | Path) -> bytes | None:
    """The `feature_spec.json` that travels with the model at `path`, without parsing the model
    (a remote scorer needs the spec but not the trees)."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model path {path} does not exist")
    return _read_files(path).get(FEATURE_SPEC_FILENAME)


def identify(data: bytes, *, origin: str = "model") -> tuple[ModelFormat, bytes]:
    """Recognise a model file's format; returns the format and the bytes to parse."""
    if data[:1] == b"\x80":
        return "xgboost-legacy-binary", _strip_config_header(extract_pickled_booster(data, origin))
    if data.startswith(_CONFIG_PREFIX):
        return "xgboost-legacy-binary", _strip_config_header(data)
    head = data[:4096].lstrip()
    if head.startswith(b"{"):
        # UBJSON objects also start with `{`, but the next byte is a type marker, not JSON.
        following = head[1:].lstrip()[:1]
        return ("xgboost-json" if following in (b'"', b"}") else "xgboost-ubjson"), data
    if head.startswith(b"tree\n") or b"\nversion=v" in head or head.startswith(b"version=v"):
        return "lightgbm-text", data
    if data.startswith(b"binf") or len(data) > 136:
        return "xgboost-legacy-binary", data
    raise ModelLoadError(f"{origin}: not a model format the bidder reads")


def extract_pickled_booster(data: bytes, origin: str = "model") -> bytes:
    """The raw booster bytes inside a pickled `xgboost.core.Booster`, found without unpickling.

    The stream is walked opcode by opcode; any global other than the handful a pickled
    Booster needs is refused, and the largest byte string in it is the booster's state.
    """
    payloads: list[bytes] = []
    strings: list[str] = []
    try:
        for opcode, argument, _ in pickletools.genops(data):
            if opcode.name in ("GLOBAL", "INST") and isinstance(argument, str):
                module, _, name = argument.partition(" ")
                _check_global(module, name, origin)
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                _check_global(strings[-2], strings[-1], origin)
            if isinstance(argument, bytes | bytearray):
                payloads.append(bytes(argument))
            elif isinstance(argument, str):
                strings.append(argument)
                if len(argument) > 64:
                    # Protocol 2 pickles bytearray as a latin-1 decoded str.
                    payloads.append(argument.encode("latin-1", errors="strict"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise ModelLoadError(f"{origin}: not a readable pickled booster ({exc})") from None
    if not payloads:
        raise ModelLoadError(f"{origin}: the pickle holds no booster bytes")
    return max(payloads, key=len)


def _check_global(module: str, name: str, origin: str) -> None:
    if (module, name) not in _PICKLE_GLOBALS_ALLOWED:
        raise ModelLoadError(
            f"{origin}: the pickle refers to {module}.{name}, which no pickled XGBoost "
            "Booster does; refusing it (pickles are never loaded, only inspected)"
        )


def _strip_config_header(data: bytes) -> bytes:
    """XGBoost 1.0 prefixes its binary model with `CONFIG-offset:<u64>` and appends its JSON
    configuration; the model proper lies between."""
    if not data.startswith(_CONFIG_PREFIX):
        return data
    start = len(_CONFIG_PREFIX) + 8
    (length,) = struct.unpack_from("<Q", data, len(_CONFIG_PREFIX))
    if start + length > len(data):
        raise ModelLoadError("legacy XGBoost model: CONFIG-offset points past the end")
    return data[start : start + length]


def _parse(model_format: ModelFormat, payload: bytes, *, origin: str) -> Any:
    parsers: dict[ModelFormat, Callable[[bytes], Any]] = {
        "xgboost-json": lambda raw: treelite.frontend.from_xgboost_json(raw.decode("utf-8")),
        "xgboost-ubjson": treelite.frontend.from_xgboost_ubjson,
        "xgboost-legacy-binary": lambda raw: _via_file(
            raw, treelite.frontend.load_xgboost_model_legacy_binary
        ),
        "lightgbm-text": lambda raw: _via_file(raw, treelite.frontend.load_lightgbm_model),
    }
    try:
        return parsers[model_format](payload)
    except (treelite.TreeliteError, UnicodeDecodeError, ValueError) as exc:
        raise ModelLoadError(f"{origin}: cannot parse as {model_format}: {exc}") from None


def _via_file(raw: bytes, loader: Callable[[str], Any]) -> Any:
    # These treelite loaders read from a path only; the file lives for the parse alone.
    with tempfile.NamedTemporaryFile(suffix=".model") as handle:
        handle.write(raw)
        handle.flush()
        return loader(handle.name)


def _looks_like_model(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    if base.startswith(".") or base.endswith((".md", ".txt.sha256", ".csv")):
        return False
    return base not in ("model-card.json", "metadata.json", "code", "requirements.txt")


def _read_files(path: Path) -> dict[str, bytes]:
    if path.is_dir():
        return {
            str(child.relative_to(path)): _read_limited(child)
            for child in sorted(path.rglob("*"))
            if child.is_file() and "code" not in child.relative_to(path).parts[:1]
        }
    data = _read_limited(path)
    if data[:2] == b"\x1f\x8b" or tarfile.is_tarfile(io.BytesIO(data)):
        return _read_tar(data, path)
    return {path.name: data}


def _read_tar(data: bytes, path: Path) -> dict[str, bytes]:
    """Members are read into memory, never extracted, so no path in the archive matters."""
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                name = member.name.removeprefix("./")
                if name.startswith("code/"):
                    continue
                total += member.size
                if total > MAX_ARTIFACT_BYTES:
                    raise ModelLoadError(f"{path}: archive larger than {MAX_ARTIFACT_BYTES} bytes")
                extracted = archive.extractfile(member)
                if extracted is not None:
                    files[name] = extracted.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ModelLoadError(f"{path}: not a readable model archive ({exc})") from None
    return files


def _read_limited(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_ARTIFACT_BYTES:
            raise ModelLoadError(f"{path}: larger than {MAX_ARTIFACT_BYTES} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror}") from None
