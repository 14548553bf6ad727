"""``python -m trio_ws_bus``: the ``trio-ws-bus`` command."""

from __future__ import annotations

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m trio_ws_bus"))
