"""How-to: connect over TLS (wss:) with your own certificate authority.

A TLS-terminating proxy on 127.0.0.1 plays the role of the load balancer in
front of the backend; trustme makes a throwaway CA and a certificate for it.

Run: python docs/examples/tls.py (needs ``pip install trustme``)
"""

from __future__ import annotations

import ssl
from functools import partial

import trio
import trustme

from trio_ws_bus import (
    CONNECTION_TOPIC,
    Backoff,
    ConnectionEvent,
    ConnectionGaveUp,
    ConnectionStatus,
    open_websocket_manager,
)
from trio_ws_bus.testing import ReferenceServer, open_reference_server

# --- the client side: what your app does ------------------------------------------


def client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Verify the server against ``ca_file`` (PEM), or the system's CAs."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # For mutual TLS, also: context.load_cert_chain("client.pem", "client.key")
    return context


def show_error(event: ConnectionEvent) -> None:
    """Print error events, such as a failed certificate check."""
    if event.status is ConnectionStatus.ERROR:
        print(f"error event: {event.message}")


async def connect_once(url: str, token: str, context: ssl.SSLContext | None) -> None:
    """Connect with ``context`` (None: the default, verifying one); one attempt."""
    async with open_websocket_manager(
        url, token=token, ssl_context=context, backoff=Backoff(max_retries=0)
    ) as manager:
        manager.bus.on(CONNECTION_TOPIC, show_error)
        try:
            await manager.wait_connected()
        except ConnectionGaveUp:
            print("not connected")
        else:
            print("connected over TLS")


# --- the server side: a TLS proxy in front of the reference server ---------------


async def proxy(server: ReferenceServer, client: trio.abc.Stream) -> None:
    """Forward one decrypted client stream to the reference server and back."""
    backend = await server.transport.open_stream("backend", 80, ssl_context=None)
    async with backend, client, trio.open_nursery() as nursery:

        async def forward(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
            try:
                async for chunk in source:
                    await sink.send_all(chunk)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            nursery.cancel_scope.cancel()  # one side is gone: close both

        nursery.start_soon(forward, client, backend)
        nursery.start_soon(forward, backend, client)


async def main() -> None:
    """Fail with the default context, then connect with the demo CA trusted."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    async with (
        open_reference_server(listen=False) as server,
        trio.open_nursery() as nursery,
    ):
        listeners = await nursery.start(
            partial(
                trio.serve_ssl_over_tcp,
                partial(proxy, server),
                0,
                server_context,
                host="127.0.0.1",
            )
        )
        port = listeners[0].transport_listener.socket.getsockname()[1]
        url = f"https://127.0.0.1:{port}"  # https: means wss:
        token = server.issue_token()

        print("with the default context (system CAs):")
        await connect_once(url, token, None)

        print("with the demo CA trusted:")
        with ca.cert_pem.tempfile() as ca_file:
            await connect_once(url, token, client_context(ca_file))
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
