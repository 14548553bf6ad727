"""Small helpers shared by the I/O modules."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import NoReturn

if sys.version_info >= (3, 11):
    from builtins import BaseExceptionGroup
else:  # pragma: no cover - depends on the Python version
    from exceptiongroup import BaseExceptionGroup

__all__ = ["BaseExceptionGroup", "leaf_exceptions", "reraise_alone"]


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
