"""A client's request body, read and parsed within the configured parser limits: size
(`max_body_bytes`) and JSON nesting (`max_json_depth`). Anything past a limit, or not
JSON when it says it is, is refused here with 4xx, before admission spends anything."""

from __future__ import annotations

import json

from .errors import BadRequest, BodyTooLarge


async def read_body(receive, headers: list[tuple[bytes, bytes]], limit: int) -> bytes:
    """The whole request body, refused with 413 as soon as it passes `limit`."""
    for name, value in headers:
        if name == b"content-length":
            try:
                if int(value) > limit:
                    raise BodyTooLarge(f"Request body is larger than the {limit}-byte maximum.")
            except ValueError:
                raise BadRequest("Content-Length is not a number.", code="invalid_header") from None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("The client disconnected while sending the body.", code="client_disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"Request body is larger than the {limit}-byte maximum.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def parse_json_body(method: str, headers: list[tuple[bytes, bytes]], body: bytes, max_depth: int) -> dict | None:
    """The JSON request, or None for bodies that are not JSON; malformed or too deeply
    nested JSON is refused with 400 here, so upstream and limits always agree on what was asked."""
    if not body or method in ("GET", "HEAD", "DELETE"):
        return None
    content_type = next((value for name, value in headers if name == b"content-type"), b"")
    if content_type and not content_type.startswith(b"application/json"):
        return None
    try:
        request = json.loads(body)
    except RecursionError:  # nested past the interpreter's own limit, far past ours
        raise _too_deep(max_depth) from None
    except ValueError:  # UnicodeDecodeError included
        raise BadRequest("The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(request, dict):
        raise BadRequest("The request body must be a JSON object.", code="invalid_json")
    # Fewer brackets than the limit cannot nest past it: most requests skip the walk.
    if body.count(b"[") + body.count(b"{") > max_depth and nests_deeper_than(request, max_depth):
        raise _too_deep(max_depth)
    return request


def nests_deeper_than(value: dict | list, limit: int) -> bool:
    """Whether objects and arrays in `value` nest more than `limit` levels (`value` is level 1).
    Level by level rather than recursive, so no depth can overflow the stack."""
    level = [value]
    for _ in range(limit):
        deeper = []
        for node in level:
            for child in node.values() if type(node) is dict else node:
                kind = type(child)
                if kind is dict or kind is list:
                    deeper.append(child)
        if not deeper:
            return False
        level = deeper
    return True


def _too_deep(max_depth: int) -> BadRequest:
    return BadRequest(f"The request body nests JSON deeper than {max_depth} levels.", code="json_too_deep")
