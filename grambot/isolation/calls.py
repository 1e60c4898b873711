"""What a call into a registered object looks like on the pipe, both ways.

Each method a proxy forwards (grambot.isolation.proxies) has a signature here: the types its
arguments and result take back on the other side. Values cross as msgpack builtins
(`msgspec.to_builtins`) and come back as the registries' own dataclasses (`msgspec.convert`),
paths as text. An exception crosses as its type name and message (a `ServiceError` with its
kind, status and retryability, so the bot and retries treat it as in process).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from grambot.errors import RemoteError, ServiceError
from grambot.registries.connectors import Attachment
from grambot.registries.images import GeneratedImage
from grambot.registries.inference import InferenceRequest, InferenceResponse
from grambot.registries.tools import ToolContext, ToolResult
from grambot.scheduling.scheduler import ScheduledRun

__all__ = [
    "RemoteError",
    "convert",
    "decode_args",
    "decode_error",
    "decode_result",
    "encode_args",
    "encode_error",
    "encode_result",
    "lend_files",
]

# (kind, method) -> (positional argument types, keyword argument types, result type)
_SIGNATURES: dict[tuple[str, str], tuple[tuple[Any, ...], dict[str, Any], Any]] = {
    ("tools", "execute"): ((dict[str, Any], ToolContext), {}, ToolResult),
    ("inference", "complete"): ((InferenceRequest,), {}, InferenceResponse),
    ("images", "generate"): (
        (str,),
        {"size": str | None, "count": int, "model": str | None},
        list[GeneratedImage],
    ),
    ("connectors", "send_message"): (
        (str, str),
        {"files": tuple[Attachment, ...], "reply_to": str | None},
        None,
    ),
    ("connectors", "start"): ((), {}, None),
    # a job's handler in the child, by the name it was registered under (isolation.durable)
    ("schedule", "run"): ((ScheduledRun,), {}, None),
    ("connectors", "stop"): ((), {}, None),
}


def _to_builtins(value: Any) -> Any:
    return msgspec.to_builtins(value, enc_hook=str)


def _dec_hook(kind: type, value: Any) -> Any:
    if kind is Path:
        return Path(value)
    raise NotImplementedError(kind)


def convert(value: Any, kind: Any) -> Any:
    """`value` (msgpack builtins) as `kind` (a dataclass, a list of them, ...)."""
    if kind is None:
        return None
    return msgspec.convert(value, kind, dec_hook=_dec_hook)


def signature(kind: str, method: str) -> tuple[tuple[Any, ...], dict[str, Any], Any]:
    try:
        return _SIGNATURES[(kind, method)]
    except KeyError:
        raise ValueError(f"{kind}.{method} is not a method that crosses the pipe") from None


def encode_args(args: Sequence[Any], kwargs: dict[str, Any]) -> list[Any]:
    return [_to_builtins(list(args)), _to_builtins(kwargs)]


def decode_args(kind: str, method: str, payload: list[Any]) -> tuple[list[Any], dict[str, Any]]:
    positional, keywords, _ = signature(kind, method)
    raw_args, raw_kwargs = payload
    args = [convert(value, t) for value, t in zip(raw_args, positional, strict=True)]
    kwargs = {name: convert(value, keywords[name]) for name, value in raw_kwargs.items()}
    return args, kwargs


def encode_result(value: Any) -> Any:
    return _to_builtins(value)


def decode_result(kind: str, method: str, payload: Any) -> Any:
    return convert(payload, signature(kind, method)[2])


def encode_error(exc: BaseException) -> dict[str, Any]:
    from grambot.containment.boundary import describe

    error: dict[str, Any] = {"type": type(exc).__name__, "message": describe(exc)}
    if isinstance(exc, ServiceError):
        error["service"] = {
            "message": exc.detail,
            "instance_id": exc.instance_id,
            "service": exc.service,
            "kind": exc.kind,
            "status": exc.status,
            "retry_after": exc.retry_after,
            "retryable": exc.retryable,
        }
    return error


def decode_error(error: dict[str, Any]) -> Exception:
    service = error.get("service")
    if service is not None:
        return ServiceError(**service)  # the keys encode_error wrote: its arguments
    message = str(error["message"])
    type_name = str(error["type"])
    return RemoteError(type_name, message.removeprefix(f"{type_name}: "))


def lend_files(
    files: tuple[Attachment, ...], own: list[Path], tmp: str | None
) -> tuple[tuple[Attachment, ...], list[Path]]:
    """`files` a child can read, for one call: a file outside its own folders (`own` and its
    temp dir `tmp`; another instance's generated image, say) is copied into `tmp`; and the
    folders of those copies (the caller removes them after the call)."""
    if tmp is None:
        return files, []
    readable = [folder.resolve() for folder in [*own, Path(tmp)]]
    lent: list[Attachment] = []
    folders: list[Path] = []
    for attachment in files:
        path = Path(attachment.path).resolve()
        if not any(path.is_relative_to(folder) for folder in readable):
            folder = Path(tempfile.mkdtemp(prefix="out-", dir=tmp))
            folders.append(folder)
            copy = folder / path.name
            shutil.copyfile(path, copy)
            attachment = dataclasses.replace(attachment, path=copy)
        lent.append(attachment)
    return tuple(lent), folders
