"""The hand-written HTTP/1.1 server: parsing, keep-alive, limits, and deliberate misbehaviour."""

from __future__ import annotations

import contextlib
import json
import logging

import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from ringbearer._httpserver import (
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    Action,
    HttpRequest,
    HttpResponse,
    _parse_head,
    _Refusal,
    serve_http,
)

HOST = "127.0.0.1"


async def echo(request: HttpRequest) -> HttpResponse:
    """Answers with the request as it was parsed, or misbehaves as the path asks."""
    match request.path:
        case "/boom":
            raise RuntimeError("handler bug")
        case "/reset":
            return HttpResponse(0, action=Action.RESET)
        case "/hang":
            return HttpResponse(0, action=Action.HANG)
        case "/truncate":
            return HttpResponse(200, b"x" * 100, action=Action.TRUNCATE)
        case "/bad-header":
            return HttpResponse.text(200, "no", (("x-evil", "a\r\nset-cookie: b"),))
        case "/no-content":
            return HttpResponse(204)
        case "/big":
            return HttpResponse(200, bytes(range(256)) * 16384)
    seen = {
        "method": request.method,
        "target": request.target,
        "path": request.path,
        "query": request.query,
        "headers": dict(request.headers),
        "body": request.body.decode("latin-1"),
    }
    return HttpResponse.json(200, seen, (("x-served-by", "echo"),))


@pytest.fixture
async def port(nursery: trio.Nursery) -> int:
    bound: int = await nursery.start(serve_http, echo, HOST, 0)
    return bound


async def exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, then read until the server closes."""
    stream = await trio.open_tcp_stream(HOST, port)
    async with stream:
        await stream.send_all(data)
        received = bytearray()
        with trio.fail_after(5):
            while chunk := await stream.receive_some():
                received += chunk
        return bytes(received)


async def read_response(stream: trio.SocketStream, buffer: bytearray) -> tuple[bytes, bytes]:
    """One response's head and body off a kept-alive connection."""
    with trio.fail_after(5):
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            buffer += await stream.receive_some()
        head = bytes(buffer[:end])
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(buffer) < end + 4 + length:
            buffer += await stream.receive_some()
    body = bytes(buffer[end + 4 : end + 4 + length])
    del buffer[: end + 4 + length]
    return head, body


def request_bytes(path: str = "/", body: bytes = b"", extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


async def test_parses_method_path_query_headers_and_body(port: int) -> None:
    """A request arrives with its path percent-decoded, query raw and header names lower-cased."""
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"http://{HOST}:{port}/a%20b/c?x=1&y=%20",
            content=b"hello",
            headers={"X-Custom": "Value"},
        )
    seen = response.json()
    assert response.status_code == 200
    assert response.headers["x-served-by"] == "echo"
    assert seen["method"] == "POST"
    assert seen["target"] == "/a%20b/c?x=1&y=%20"
    assert seen["path"] == "/a b/c"
    assert seen["query"] == "x=1&y=%20"
    assert seen["headers"]["x-custom"] == "Value"
    assert seen["body"] == "hello"


async def test_repeated_headers_are_joined(port: int) -> None:
    """Headers sent twice reach the handler as one comma-joined value."""
    raw = await exchange(port, request_bytes(extra="X-A: 1\r\nx-a:  2 \r\nConnection: close\r\n"))
    seen = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    assert seen["headers"]["x-a"] == "1, 2"


async def test_keep_alive_serves_many_requests_on_one_connection(port: int) -> None:
    """One connection carries request after request, each answered in turn."""
    stream = await trio.open_tcp_stream(HOST, port)
    buffer = bytearray()
    async with stream:
        for i in range(200):
            await stream.send_all(request_bytes(f"/n{i}", b"x" * i))
            head, body = await read_response(stream, buffer)
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert b"connection: close" not in head
            assert json.loads(body)["path"] == f"/n{i}"


async def test_pipelined_requests_are_answered_in_order(port: int) -> None:
    """Requests sent back to back in one write get their answers in the same order."""
    stream = await trio.open_tcp_stream(HOST, port)
    buffer = bytearray()
    async with stream:
        await stream.send_all(b"".join(request_bytes(f"/p{i}") for i in range(20)))
        paths = [json.loads((await read_response(stream, buffer))[1])["path"] for _ in range(20)]
    assert paths == [f"/p{i}" for i in range(20)]


async def test_stray_crlf_between_requests_is_ignored(port: int) -> None:
    """An extra CRLF after a body does not break the next request."""
    stream = await trio.open_tcp_stream(HOST, port)
    buffer = bytearray()
    async with stream:
        await stream.send_all(request_bytes("/a", b"{}") + b"\r\n" + request_bytes("/b"))
        first = json.loads((await read_response(stream, buffer))[1])
        second = json.loads((await read_response(stream, buffer))[1])
    assert (first["path"], second["path"]) == ("/a", "/b")


async def test_connection_close_is_honoured(port: int) -> None:
    """A client asking for Connection: close gets it announced and the connection closed."""
    raw = await exchange(port, request_bytes(extra="Connection: close\r\n"))
    assert raw.startswith(b"HTTP/1.1 200 OK")
    assert b"\r\nconnection: close\r\n" in raw


async def test_http10_closes_unless_asked_to_keep_alive(port: int) -> None:
    """HTTP/1.0 without keep-alive gets one answer and a closed connection."""
    raw = await exchange(port, b"GET / HTTP/1.0\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 OK")
    assert raw.count(b"HTTP/1.1") == 1


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET / HTTP/2.0\r\n\r\n", b"505"),
        (b"GET /\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nX: a\nY: b\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nContent-Length: ten\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\nab", b"400"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"411"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1), b"413"),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n", b"431"),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD_BYTES + 10), b"431"),
        (b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", b"400"),
        (b"GET / HTTP/1.1\r\nHost: x", b"400"),
    ],
)
async def test_bad_requests_get_an_error_and_a_closed_connection(
    port: int, data: bytes, status: bytes
) -> None:
    """Malformed, oversized or chunked requests are refused with the right status, then closed."""
    stream = await trio.open_tcp_stream(HOST, port)
    async with stream:
        await stream.send_all(data)
        await stream.send_eof()
        received = bytearray()
        with trio.fail_after(5):
            while chunk := await stream.receive_some():
                received += chunk
    assert received.startswith(b"HTTP/1.1 " + status)
    assert b"\r\nconnection: close\r\n" in received


async def test_server_survives_bad_input_and_keeps_serving(port: int) -> None:
    """After garbage and abrupt disconnects, the next client is served normally."""
    await exchange(port, b"\x00\xff\r\n\r\n")
    stream = await trio.open_tcp_stream(HOST, port)
    await stream.send_all(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab")
    await stream.aclose()
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://{HOST}:{port}/still-here")
    assert response.json()["path"] == "/still-here"


async def test_expect_continue_gets_an_interim_response(port: int) -> None:
    """A client that waits for 100 Continue gets it before sending its body."""
    stream = await trio.open_tcp_stream(HOST, port)
    buffer = bytearray()
    async with stream:
        head = b"POST /e HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
        await stream.send_all(head)
        with trio.fail_after(5):
            while b"\r\n\r\n" not in buffer:
                buffer += await stream.receive_some()
        assert bytes(buffer) == b"HTTP/1.1 100 Continue\r\n\r\n"
        buffer.clear()
        await stream.send_all(b"hi")
        _, body = await read_response(stream, buffer)
    assert json.loads(body)["body"] == "hi"


async def test_large_bodies_both_ways(port: int) -> None:
    """Multi-megabyte requests and responses cross whole, however the socket buffers fill."""
    body = b"z" * (MAX_BODY_BYTES - 1)
    async with httpx.AsyncClient() as client:
        echoed = await client.post(f"http://{HOST}:{port}/up", content=body)
        big = await client.get(f"http://{HOST}:{port}/big")
    assert len(echoed.json()["body"]) == len(body)
    assert big.content == bytes(range(256)) * 16384


async def test_head_request_gets_headers_without_a_body(port: int) -> None:
    """HEAD gets the Content-Length a GET would have, and no body."""
    async with httpx.AsyncClient() as client:
        head = await client.head(f"http://{HOST}:{port}/h")
        get = await client.get(f"http://{HOST}:{port}/h")
    assert head.content == b""
    assert int(head.headers["content-length"]) > 0
    assert get.status_code == 200


async def test_no_content_response_has_no_length(port: int) -> None:
    """A 204 is sent without Content-Length or body, and the connection stays usable."""
    async with httpx.AsyncClient() as client:
        first = await client.get(f"http://{HOST}:{port}/no-content")
        second = await client.get(f"http://{HOST}:{port}/after")
    assert first.status_code == 204
    assert "content-length" not in first.headers
    assert second.json()["path"] == "/after"


async def test_handler_exception_becomes_a_logged_500(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler that raises costs one 500 and a log line, not the server."""
    async with httpx.AsyncClient() as client:
        with caplog.at_level(logging.ERROR, logger="ringbearer._httpserver"):
            failed = await client.get(f"http://{HOST}:{port}/boom")
        after = await client.get(f"http://{HOST}:{port}/fine")
    assert failed.status_code == 500
    assert "handler failed" in caplog.text
    assert after.status_code == 200


async def test_header_injection_in_a_response_becomes_a_500(
    port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A response header holding a line break is never sent; the client gets a 500."""
    async with httpx.AsyncClient() as client:
        with caplog.at_level(logging.ERROR, logger="ringbearer._httpserver"):
            response = await client.get(f"http://{HOST}:{port}/bad-header")
    assert response.status_code == 500
    assert "set-cookie" not in response.headers


async def test_reset_action_aborts_the_connection(port: int) -> None:
    """Action.RESET reaches the client as a connection error, not a response."""
    async with httpx.AsyncClient() as client:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await client.get(f"http://{HOST}:{port}/reset")


async def test_hang_action_never_answers(port: int) -> None:
    """Action.HANG keeps the connection open and silent until the client gives up."""
    async with httpx.AsyncClient(timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"http://{HOST}:{port}/hang")


async def test_truncate_action_cuts_the_body_short(port: int) -> None:
    """Action.TRUNCATE announces the whole body, sends half, and closes."""
    raw = await exchange(port, request_bytes("/truncate"))
    head, body = raw.split(b"\r\n\r\n", 1)
    announced = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    assert len(body) == announced // 2
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"http://{HOST}:{port}/truncate")


async def test_serve_http_reports_the_ephemeral_port(nursery: trio.Nursery) -> None:
    """Port 0 binds any free port, and started() says which."""
    first = await nursery.start(serve_http, echo, HOST, 0)
    second = await nursery.start(serve_http, echo, HOST, 0)
    assert first > 0 and second > 0 and first != second


def make_request(body: bytes, content_type: str | None = None, query: str = "") -> HttpRequest:
    headers = {} if content_type is None else {"content-type": content_type}
    return HttpRequest("POST", "/?" + query, "/", query, headers, body)


def test_json_body_and_its_errors() -> None:
    """json() decodes JSON and raises ValueError on anything else."""
    assert make_request(b'{"a": [1]}').json() == {"a": [1]}
    for bad in (b"", b"{", b"\xff"):
        with pytest.raises(ValueError):
            make_request(bad).json()


def test_urlencoded_form_and_query_params() -> None:
    """form() and query_params() keep repeated and blank fields."""
    request = make_request(
        b"to=a%40x.com&to=b%40x.com&subject=Hi+there&text=",
        "application/x-www-form-urlencoded",
        query="a=1&a=2&b=",
    )
    assert request.form() == {"to": ["a@x.com", "b@x.com"], "subject": ["Hi there"], "text": [""]}
    assert request.query_params() == {"a": ["1", "2"], "b": [""]}


def test_multipart_part_with_an_unknown_charset_falls_back_to_utf8() -> None:
    """A part labelled with a charset Python does not know is read as UTF-8."""
    body = (
        b"--b\r\nContent-Disposition: form-data; name=a\r\n"
        b"Content-Type: text/plain; charset=klingon\r\n\r\nv\xc3\xa9\r\n--b--\r\n"
    )
    assert make_request(body, "multipart/form-data; boundary=b").form() == {"a": ["vé"]}


def test_multipart_form_as_an_sdk_sends_it() -> None:
    """form() reads multipart text fields and file parts, as an SDK would send them."""
    built = httpx.Request(
        "POST",
        "http://x/",
        data={"from": "a@x.com", "to": ["b@x.com", "c@x.com"], "text": "héllo\r\nline 2"},
        files={"attachment": ("a.txt", b"file body", "text/plain")},
    )
    request = make_request(built.read(), built.headers["content-type"])
    assert request.form() == {
        "from": ["a@x.com"],
        "to": ["b@x.com", "c@x.com"],
        "text": ["héllo\r\nline 2"],
        "attachment": ["file body"],
    }


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"x", "multipart/form-data"),
        (
            b"--b\r\nContent-Disposition: form-data\r\n\r\nv\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
        ),
        (
            b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n",
            "multipart/form-data; boundary=b",
        ),
        (b"--b\r\nno headers end\r\n--b--", "multipart/form-data; boundary=b"),
        (b"{}", "application/json"),
        (b"\xff=1", "application/x-www-form-urlencoded"),
    ],
)
def test_bad_forms_raise_value_error(body: bytes, content_type: str) -> None:
    """form() raises ValueError for broken multipart, non-form bodies and bad encodings."""
    with pytest.raises(ValueError):
        make_request(body, content_type).form()


def test_response_constructors() -> None:
    """json() and text() set the body and the content type, then the extra headers."""
    as_json = HttpResponse.json(201, {"a": 1}, (("x-a", "1"),))
    assert as_json == HttpResponse(
        201, b'{"a":1}', (("content-type", "application/json"), ("x-a", "1"))
    )
    as_text = HttpResponse.text(400, "nope")
    assert as_text.body == b"nope"
    assert as_text.headers == (("content-type", "text/plain; charset=utf-8"),)
    assert as_text.action is Action.RESPOND


@settings(max_examples=300, deadline=None, database=None)
@given(st.binary(max_size=300))
def test_any_head_parses_or_is_refused(head: bytes) -> None:
    """Whatever bytes arrive as a head, parsing either succeeds or refuses with an HTTP status."""
    try:
        _parse_head(head)
    except _Refusal as refusal:
        assert 400 <= refusal.status <= 599


@settings(max_examples=300, deadline=None, database=None)
@given(st.binary(max_size=300), st.sampled_from(["multipart/form-data; boundary=b", None]))
def test_any_form_body_parses_or_raises_value_error(body: bytes, content_type: str | None) -> None:
    """Whatever a form body holds, form() returns fields or raises ValueError, nothing else."""
    with contextlib.suppress(ValueError):
        make_request(body, content_type).form()
