"""The Router's arguments, checked (a ValueError names the argument and the rule) and put in
the form its parts take."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError

from schemas._types import IDENTIFIER_MAX, IDENTIFIER_PATTERN, Context
from schemas.events import MAX_CANDIDATES
from schemas.settings import OutrouteSettings

from ..cache import FeedDriver, SnapshotSource
from .feed import SourceThread, shared_feed

__all__ = [
    "check_among",
    "check_context",
    "check_force_path",
    "check_identifier",
    "check_max_attempts",
    "feed_driver",
    "normalize_paths",
]

_IDENTIFIER: Final = re.compile(IDENTIFIER_PATTERN)
_CONTEXT: Final = TypeAdapter(Context)


def check_identifier(name: str, value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= IDENTIFIER_MAX:
        raise ValueError(f"{name} must be a string of 1-{IDENTIFIER_MAX} characters, got {value!r}")
    if not _IDENTIFIER.match(value):
        raise ValueError(
            f"{name} {value!r} has characters outside letters, digits and _.:/@+=- "
            "(or does not start with a letter or digit)"
        )
    return value


def check_max_attempts(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_attempts must be an int >= 1, got {value!r}")
    return value


def normalize_paths(paths: Any) -> tuple[tuple[str, ...], tuple[Callable[..., Any], ...] | None]:
    """The paths' names, and their callables when the paths are functions (else None)."""
    if isinstance(paths, str | bytes) or not isinstance(paths, Iterable):
        raise ValueError(f"paths must be a list of names or callables, got {paths!r}")
    items = list(paths)
    if not items:
        raise ValueError("paths must not be empty")
    if len(items) > MAX_CANDIDATES:
        raise ValueError(f"paths may hold at most {MAX_CANDIDATES} entries, got {len(items)}")
    names: list[str] = []
    fns: list[Callable[..., Any]] = []
    for item in items:
        if isinstance(item, str):
            names.append(check_identifier("path", item))
        elif isinstance(item, tuple) and len(item) == 2 and callable(item[1]):
            names.append(check_identifier("path name", item[0]))
            fns.append(item[1])
        elif callable(item):
            qualname = getattr(item, "__qualname__", None)
            if not isinstance(qualname, str) or not _IDENTIFIER.match(qualname):
                raise ValueError(
                    f"cannot name callable path {item!r} by its __qualname__ {qualname!r}; "
                    "pass (name, fn) pairs instead"
                )
            names.append(qualname)
            fns.append(item)
        else:
            raise ValueError(f"each path must be a name (str) or a callable, got {item!r}")
    if fns and len(fns) != len(names):
        raise ValueError("paths must be all names (str) or all callables, not a mix")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"paths must be unique; repeated: {repeated}")
    return tuple(names), (tuple(fns) if fns else None)


def check_context(context: Mapping[str, Any]) -> dict[str, Any]:
    try:
        checked: dict[str, Any] = _CONTEXT.validate_python(context, strict=True)
    except ValidationError as exc:
        raise ValueError(f"context is invalid: {exc}") from exc
    return checked


def check_force_path(force_path: Any, candidates: tuple[str, ...], subset: bool) -> str:
    if not isinstance(force_path, str) or force_path not in candidates:
        offered = "the paths offered" if subset else "paths"
        raise ValueError(f"force_path {force_path!r} is not one of {offered} {list(candidates)}")
    return force_path


def check_among(among: Any, index: Mapping[str, int]) -> tuple[int, ...]:
    """The indexes of the paths named in ``among``, in the router's order."""
    if isinstance(among, str | bytes) or not isinstance(among, Iterable):
        raise ValueError(f"among must be a list of path names, got {among!r}")
    chosen = set()
    for name in among:
        i = index.get(name) if isinstance(name, str) else None
        if i is None:
            raise ValueError(f"among: {name!r} is not one of paths {list(index)}")
        chosen.add(i)
    if not chosen:
        raise ValueError("among must name at least one path")
    return tuple(sorted(chosen))


def feed_driver(
    snapshot_source: SnapshotSource | Callable[[], SnapshotSource] | None,
    connection: OutrouteSettings,
) -> Callable[[], FeedDriver]:
    """What keeps the router's policy fresh: the process's shared feed of the connection's
    Redis, or a thread of its own over the source given (or the source the factory makes)."""
    if snapshot_source is None:
        url, keys = connection.redis_url.get_secret_value(), connection.redis_keys()
        return lambda: shared_feed(url, keys)
    if callable(snapshot_source) and not hasattr(snapshot_source, "fetch"):
        factory = snapshot_source
    else:
        source = snapshot_source
        factory = lambda: source  # type: ignore[assignment,return-value]  # noqa: E731
    return lambda: SourceThread(factory)
