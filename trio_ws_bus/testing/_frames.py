"""Raw WebSocket frames and HTTP answers, valid or not, for misbehaving servers."""

from __future__ import annotations

import base64
import enum
import hashlib
import re
import struct
from collections.abc import Iterable

__all__ = ["Opcode", "encode_frame", "http_response", "upgrade_response"]


class Opcode(enum.IntEnum):
    """WebSocket frame opcodes (RFC 6455 section 5.2)."""

    CONTINUATION = 0x0
    """A further fragment of a text or binary message."""
    TEXT = 0x1
    """The first (or only) frame of a text message."""
    BINARY = 0x2
    """The first (or only) frame of a binary message."""
    CLOSE = 0x8
    """A close frame: a 2-byte code, then a UTF-8 reason."""
    PING = 0x9
    """A ping; the peer must answer with a pong."""
    PONG = 0xA
    """A pong."""


def encode_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
) -> bytes:
    """Encode one WebSocket frame exactly as asked, even if it breaks the protocol.

    A server must not mask its frames, must not set reserved bits without an
    extension, must not send control frames over 125 bytes or fragmented; this
    function does whatever it is told, so a test can send such frames with
    :meth:`ServerConnection.write_raw`.

    Args:
        opcode: The opcode (an :class:`Opcode` or any int 0-15).
        payload: The payload, sent as is (invalid UTF-8 in a text frame too).
        fin: Whether this is the last frame of its message.
        rsv: The three reserved bits RSV1-RSV3, as an int 0-7 (RSV1 is 4).
        mask: A 4-byte masking key: masks the payload and sets the mask bit.

    Returns:
        The frame's bytes.

    Raises:
        ValueError: If ``opcode``, ``rsv`` or ``mask`` is out of range.
    """
    if not 0 <= opcode <= 0xF:
        raise ValueError(f"opcode must be 0-15, got {opcode!r}")
    if not 0 <= rsv <= 7:
        raise ValueError(f"rsv must be 0-7, got {rsv!r}")
    if mask is not None and len(mask) != 4:
        raise ValueError("mask must be 4 bytes")
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if mask is not None else 0
    length = len(payload)
    if length < 126:
        header = bytes([first, mask_bit | length])
    elif length < 1 << 16:
        header = bytes([first, mask_bit | 126]) + struct.pack("!H", length)
    else:
        header = bytes([first, mask_bit | 127]) + struct.pack("!Q", length)
    if mask is not None:
        payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        header += mask
    return header + payload


_REASONS = {
    101: "Switching Protocols",
    200: "OK",
    301: "Moved Permanently",
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def http_response(
    status: int,
    *,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> bytes:
    """Build an HTTP/1.1 answer with a ``Content-Length`` header.

    Args:
        status: The status code.
        headers: Extra headers, in order (``[("Location", "http://...")]``).
        body: The body.

    Returns:
        The answer's bytes, head and body.
    """
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("latin-1") + body


_KEY_HEADER = re.compile(
    rb"^sec-websocket-key:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE
)
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def upgrade_response(request: bytes) -> bytes:
    """Build the valid 101 answer to a WebSocket handshake request.

    For a :class:`RawHttpServer` answer that accepts the handshake and then
    misbehaves: ``lambda request: upgrade_response(request) + encode_frame(...)``.

    Args:
        request: The client's request head, as :attr:`RawHttpServer.requests`
            records it.

    Returns:
        The answer's bytes (status line and headers, no body).

    Raises:
        ValueError: If the request has no ``Sec-WebSocket-Key`` header.
    """
    match = _KEY_HEADER.search(request)
    if match is None:
        raise ValueError("the request has no Sec-WebSocket-Key header")
    digest = hashlib.sha1(match[1] + _ACCEPT_GUID).digest()  # RFC 6455, 4.2.2
    accept = base64.b64encode(digest).decode("ascii")
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    ).encode("ascii")
