"""trio_ws_bus benchmarks: cost per message, fan-out, routing, memory, reconnect.

Run them all with one command from the repository root (or ``nox -s bench``)::

    python -m bench                 # full run, several minutes on 2 cores
    python -m bench --quick         # smoke run, seconds, numbers indicative
    python -m bench --only fanout --rounds 9

A table is printed per benchmark and the results are written as JSON to
``bench/results/latest.json`` (``--output`` elsewhere). The machine is assumed
to be small, shared and noisy: the variants that are compared run interleaved
in the same run, several rounds, and each goal is a ratio to its baseline
from the same run (``docs/performance.rst`` explains the method and shows the
latest numbers).

Modules: ``throughput`` (end to end over loopback against
``_server_proc``, a server in its own process), ``latency`` (the same server
writing at a steady rate), ``fanout``, ``routing``,
``memory``, ``reconnect`` and ``decode`` (also runnable alone as
``python bench/decode.py``).
"""
