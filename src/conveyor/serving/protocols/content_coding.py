"""HTTP content codings of request bodies: ``Content-Encoding: gzip`` or ``deflate``.

Triton's clients compress request bodies on demand (``request_compression_algorithm``), and a
V2 server is expected to decode them before anything else: the binary tensor extension's
``Inference-Header-Content-Length`` counts bytes of the *decoded* body. Decoding is bounded,
so a small compressed body cannot expand into gigabytes (a 413, like an oversized body).
"""

from __future__ import annotations

import zlib

from conveyor.serving.protocols.errors import ProtocolError, invalid

__all__ = ["CODINGS", "decode_body"]

CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
"""Content codings understood and their zlib window bits ("deflate" is the zlib format, as
RFC 9110 defines it and as Triton's clients send it)."""


def decode_body(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """``body`` decoded as its ``Content-Encoding`` header says (none or ``identity``: as is).

    Args:
        body: The raw request body.
        content_encoding: The ``Content-Encoding`` header value, or None when absent.
        max_bytes: Largest decoded body accepted.

    Raises:
        ProtocolError: 415 for an unknown coding or a chain of codings, 400 for data that
            is not valid for its coding, 413 when the decoded body exceeds ``max_bytes``.

    Example:
        >>> decode_body(zlib.compress(b'{"inputs": []}'), "deflate", 1 << 20)
        b'{"inputs": []}'
    """
    coding = (content_encoding or "").strip().lower()
    if coding in ("", "identity"):
        return body
    wbits = CODINGS.get(coding)
    if wbits is None:
        raise ProtocolError(
            415,
            f"Content-Encoding {content_encoding!r} is not supported; send the body as is, "
            f"or compressed with one of {', '.join(sorted(CODINGS))}",
        )
    decoder = zlib.decompressobj(wbits)
    try:
        decoded = decoder.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise invalid(f"the body is not valid {coding} data (Content-Encoding): {exc}") from None
    if len(decoded) > max_bytes or decoder.unconsumed_tail:
        raise ProtocolError(
            413, f"the {coding}-decoded request body is over the limit of {max_bytes} bytes"
        )
    if not decoder.eof or decoder.unused_data:
        raise invalid(f"the {coding} body is truncated or has trailing bytes (Content-Encoding)")
    return decoded
