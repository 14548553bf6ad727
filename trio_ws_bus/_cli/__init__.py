"""The ``trio-ws-bus`` command (``python -m trio_ws_bus``): demo, listen, serve.

* :mod:`._output`: what the commands print, as pure functions (text and JSON
  lines, the summary) and the one object that writes;
* :mod:`._tokens`: where ``listen`` gets its token (environment, file or
  command), read again before every connection attempt;
* :mod:`._commands`: one async function per command, and :class:`Stop`,
  which turns Ctrl-C into a clean stop (close code 1000, summary, status 130);
* :mod:`._main`: argparse and :func:`main`, which maps every expected failure
  to a one-line message and an exit status.

``demo`` and ``serve`` run the reference server of :mod:`trio_ws_bus.testing`
(needs PyJWT, the ``testing`` extra), imported only when those commands run.
"""

from __future__ import annotations

from ._main import main as main

__all__ = ["main"]
