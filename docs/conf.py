"""Sphinx configuration: ``nox -s docs`` builds with ``-W --keep-going``.

The build is the same offline and online: it fetches nothing. Links to
external projects (Trio, the standard library, attrs, msgspec) would need
intersphinx inventories from the network, so intersphinx is only switched on
when ``TRIO_WS_BUS_DOCS_INTERSPHINX=1`` is set, and the external names our
signatures and docstrings mention are listed in ``nitpick_ignore`` below (they
render as plain code instead of links).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from sphinx.application import Sphinx
from sphinx.pycode import ModuleAnalyzer

import trio_ws_bus
import trio_ws_bus.testing

project = "trio_ws_bus"
author = "trio_ws_bus developers"
copyright = "trio_ws_bus developers"
release = trio_ws_bus.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    # Renders async context managers as "async with f() as x", as Trio's docs do.
    "sphinxcontrib_trio",
]
intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "trio": ("https://trio.readthedocs.io/en/stable/", None),
}
if os.environ.get("TRIO_WS_BUS_DOCS_INTERSPHINX") == "1":
    extensions.append("sphinx.ext.intersphinx")

exclude_patterns = ["_build"]
source_suffix = {".rst": "restructuredtext"}
root_doc = "index"

# The library's docstrings use single backticks for cross-references, as Trio's do.
default_role = "py:obj"
nitpicky = True

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
# Keep the public aliases in signatures instead of their expansion. Not
# SubscriptionKey and SubscriptionKind: they appear inside generics in property
# annotations (list[SubscriptionKey]), which Sphinx renders as
# "TypeAliasForwardRef(...)"; and trio_ws_bus.testing has its own SubscriptionKey.
autodoc_type_aliases = {
    name: f"trio_ws_bus.{name}"
    for name in (
        "TokenProvider",
        "TokenLocation",
        "HandshakeHeaders",
        "RetryPolicy",
        "ServerMessage",
    )
}
# The untyped overloads of MessageBus take any str that is not a Topic.
autodoc_type_aliases["_PlainTopic"] = "str"
python_use_unqualified_type_names = True
# Long signatures (open_websocket_manager) get one parameter per line.
maximum_signature_line_length = 88

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_preprocess_types = True
napoleon_attr_annotations = True

# External names that cannot be linked offline (see the module docstring).
# Each group is what our signatures and docstrings mention; a name missing here
# fails the build, which is how a new external dependency gets noticed.
_EXTERNAL = {
    # Trio: types in signatures, exceptions named in Raises sections.
    "trio": [
        "trio.abc.ReceiveChannel",
        "trio.abc.Stream",
        "trio.ClosedResourceError",
        "trio.BrokenResourceError",
        "trio.EndOfChannel",
        "trio.WouldBlock",
        "trio.TooSlowError",
        "trio.Nursery",
        "trio.fail_after",
        "trio.move_on_after",
        "trio.testing.MockClock",
        "trio.testing.memory_stream_pair",
        "trio.testing.wait_all_tasks_blocked",
        "trio.from_thread.run_sync",
        "trio.run",
        "trio.serve_ssl_over_tcp",
        "trio.SSLStream",
        "trio.open_ssl_over_tcp_stream",
    ],
    # OpenTelemetry: trio_ws_bus.otel's signature.
    "opentelemetry": ["opentelemetry.metrics.MeterProvider"],
    # msgspec: the wire messages are msgspec Structs.
    "msgspec": ["msgspec.Struct"],
    # The standard library.
    "stdlib": [
        "ssl.SSLContext",
        "ssl.SSLError",
        "ssl.SSLCertVerificationError",
        "ssl.create_default_context",
        "enum.Enum",
        "str",
        "int",
        "float",
        "bool",
        "bytes",
        "bytearray",
        "memoryview",
        "object",
        "dict",
        "list",
        "tuple",
        "None",
        "Any",
        "typing.Any",
        "Literal",
        "typing.Literal",
        "collections.abc.Callable",
        "collections.abc.Awaitable",
        "collections.abc.AsyncIterator",
        "collections.abc.Iterator",
        "collections.abc.Iterable",
        "collections.abc.Mapping",
        "collections.abc.Sequence",
        "contextlib.AbstractAsyncContextManager",
        "random.Random",
        "time.time",
        "typing.Protocol",
        "Exception",
        "ValueError",
        "TypeError",
        "RuntimeError",
        "OSError",
        "ConnectionRefusedError",
        "MemoryError",
        "RecursionError",
        "sys.get_int_max_str_digits",
        "logging.Logger",
        "logging.Filter",
    ],
}
_ROLES = ("py:class", "py:obj", "py:exc", "py:func", "py:data", "py:meth", "py:mod")
nitpick_ignore = [
    (role, name) for names in _EXTERNAL.values() for name in names for role in _ROLES
]
nitpick_ignore += [
    # Private names that public docstrings mention; not importable from
    # trio_ws_bus (reported to the maintainers: export them or reword).
    ("py:class", "Action"),  # SubscribeRequest.action's annotation
]
# Type aliases are documented as data; Sphinx before 8.2 (the newest on
# Python 3.10) looks them up as classes when they stand in a signature.
nitpick_ignore += [
    ("py:class", f"trio_ws_bus.{alias}") for alias in autodoc_type_aliases
]
nitpick_ignore_regex = [
    # Type variables of generic classes (Subscription[_T_co], Topic[_P]).
    (r"py:.*", r"(trio_ws_bus\._(bus|subscription)\.)?(_T(_co)?|_P)"),
]

html_theme = "alabaster"
html_title = f"trio_ws_bus {release}"
html_theme_options = {
    "description": "Live alerts and device telemetry over a WebSocket, for Trio.",
    "fixed_sidebar": True,
}


def _analyze_public_packages() -> None:
    """Let autodoc find attribute docs where the public names now live.

    Public names say ``__module__ = "trio_ws_bus"`` (see ``_util.py``), so
    autodoc reads attribute and data docstrings (``#:`` comments, strings
    after an assignment) from ``trio_ws_bus/__init__.py``, which only
    re-exports them. Give each public package an analyzer holding what its
    private modules define.
    """
    trio_ws_bus.testing.ReferenceServer  # noqa: B018  (loads the kit's modules)
    for package in ("trio_ws_bus", "trio_ws_bus.testing"):
        merged = ModuleAnalyzer.for_module(package)
        merged.analyze()
        for name in sorted(sys.modules):
            if (
                name.startswith(package + "._")
                and name.count(".") == package.count(".") + 1
            ):
                part = ModuleAnalyzer.for_module(name)
                part.analyze()
                merged.attr_docs.update(part.attr_docs)
                merged.annotations.update(part.annotations)
                merged.tagorder.update(part.tagorder)


def _fix_docstring(
    app: Sphinx, what: str, name: str, obj: object, options: Any, lines: list[str]
) -> None:
    """Keep napoleon from inventing types.

    Napoleon takes the text before the first colon of an attribute's
    docstring as the attribute's type. Our attribute docstrings never give a
    type that way (annotations do), so an empty type is put first: napoleon
    reads ``": Stop: ..."`` as no type and the description ``"Stop: ..."``.
    Runs before napoleon (priority 400 < 500).
    """
    if what in ("attribute", "data", "property") and lines and ":" in lines[0]:
        lines[0] = ": " + lines[0]


def _async_with_signature(
    app: Sphinx,
    what: str,
    name: str,
    obj: object,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None] | None:
    """Drop ``-> AsyncIterator[...]`` where the entry reads ``async with ... as x``."""
    if "async-with" in options:
        return signature, None
    return None


def setup(app: Sphinx) -> None:
    """Register the docstring fix-up; analyze the public packages."""
    _analyze_public_packages()
    app.connect("autodoc-process-signature", _async_with_signature)
    app.connect("autodoc-process-docstring", _fix_docstring, priority=400)
