"""Small helpers shared by the I/O modules."""

from __future__ import annotations

import sys
from abc import ABCMeta
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import NoReturn, TypeVar

import trio

if sys.version_info >= (3, 11):
    from builtins import BaseExceptionGroup
else:  # pragma: no cover - depends on the Python version
    from exceptiongroup import BaseExceptionGroup

__all__ = [
    "BaseExceptionGroup",
    "NoPublicConstructor",
    "fixup_module_metadata",
    "leaf_exceptions",
    "open_nursery_body_as_itself",
    "reraise_alone",
]

_T = TypeVar("_T")


class NoPublicConstructor(ABCMeta):
    """Metaclass of classes only the library makes (trio's ``NoPublicConstructor``).

    Calling the class raises ``TypeError``, naming the factory when the class
    sets ``_made_by``; the library makes instances with ``cls._create(...)``.
    """

    def __call__(cls, *args: object, **kwargs: object) -> NoReturn:
        made_by: str | None = getattr(cls, "_made_by", None)
        hint = f"; use {made_by}" if made_by else ""
        raise TypeError(
            f"{cls.__module__}.{cls.__qualname__} has no public constructor{hint}"
        )

    def _create(cls: type[_T], *args: object, **kwargs: object) -> _T:
        return super().__call__(*args, **kwargs)  # type: ignore[misc, no-any-return]


def leaf_exceptions(
    group: BaseExceptionGroup[BaseException],
) -> Iterator[BaseException]:
    """Yield the exceptions in ``group``, descending into nested groups."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from leaf_exceptions(exc)
        else:
            yield exc


def reraise_alone(exc: BaseException) -> NoReturn:
    """Raise ``exc`` out of a group without rewriting its cause or context.

    ``raise exc`` inside an ``except`` block would set the group as the
    context of ``exc``; this keeps the context ``exc`` had before (the trick
    trio-websocket's ``open_websocket`` uses).
    """
    context = exc.__context__
    try:
        raise exc
    finally:
        exc.__context__ = context
        del exc, context


@asynccontextmanager
async def open_nursery_body_as_itself() -> AsyncIterator[trio.Nursery]:
    """Open a nursery that lets one failure out as itself, not in a group.

    Trio wraps whatever leaves a nursery in an ``ExceptionGroup``. The rule
    of every nursery of ours whose failures reach a caller:

    * The group holds only what the body raised (a group included, which the
      nursery may hold as a copy): the very object the body raised comes out.
    * The group holds one task's exception (the body, if it failed at all,
      was cancelled by that failure): that exception comes out.
    * More than one failed: the group propagates.

    What comes out alone keeps the context it had (:func:`reraise_alone`).
    Use it where ``trio.open_nursery()`` would stand::

        async with open_nursery_body_as_itself() as nursery:
            nursery.start_soon(serve)
            yield server
    """
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                yield nursery
            except BaseException as exc:
                body_error = exc
                raise
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            (alone,) = group.exceptions
            if body_error is not None and type(alone) is type(body_error):
                reraise_alone(body_error)
            reraise_alone(alone)
        raise


def fixup_module_metadata(module_name: str, namespace: Mapping[str, object]) -> None:
    """Give the public names of ``namespace`` the module users import them from.

    ``trio_ws_bus._bus.MessageBus`` becomes ``trio_ws_bus.MessageBus`` in reprs,
    tracebacks, pickles and the rendered docs, as Trio does for its own names.
    Only objects defined in a private module below ``module_name`` change
    (``trio_ws_bus.testing._codec`` included), and not msgspec Structs: msgspec
    evaluates their annotations in the module that ``__module__`` names, so
    ``inspect.signature()`` would break.
    """

    def private(module: str) -> bool:
        below = module.startswith(module_name + ".")
        return below and any(part.startswith("_") for part in module.split("."))

    for name, obj in namespace.items():
        if not (isinstance(obj, type) or callable(obj)) or isinstance(obj, str):
            continue  # values (a Topic is a str) keep their class's module
        ours = private(getattr(obj, "__module__", ""))
        if ours and not name.startswith("_") and not hasattr(obj, "__struct_fields__"):
            obj.__module__ = module_name
