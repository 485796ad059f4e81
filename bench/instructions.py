"""Instructions per request, counted by valgrind (callgrind): the number that does not move with machine noise.

    python bench/instructions.py                      # every shape, this checkout
    python bench/instructions.py --shape stream-10 --option admin=false
    python bench/instructions.py --serve --reference  # as `mockstream serve` runs, against a minimal aiohttp handler

The server and a raw-socket client run in one process on the standard event loop: N requests on one keep-alive
connection, counted twice (FEW and MANY requests), so what starting Python and the server costs cancels out and
(MANY - FEW) / (MANY - FEW requests) is what one more request costs, client included (the client is the same for
every build, and for `--reference`: the minimal aiohttp handler of reference_server.py, served the same way).
Needs `valgrind` (Debian: `apt-get install valgrind`). A run takes about a minute per shape and server.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

FEW, MANY = 20, 60
SHAPES = {  # name -> the request's mockstream knobs and whether it streams
    "stream-10": ({"random_tokens": 10, "ttft_ms": 0, "itl_ms": 0}, True),
    "stream-200": ({"random_tokens": 200, "ttft_ms": 0, "itl_ms": 0}, True),
    "whole-10": ({"random_tokens": 10, "ttft_ms": 0, "itl_ms": 0}, False),
}

CLIENT = r"""
import asyncio, json, sys
from aiohttp import web

count, knobs, stream, server, options = (int(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3] == "1", sys.argv[4],
                                         json.loads(sys.argv[5]))
body = json.dumps({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": "hi"}],
                   "mockstream": knobs}).encode()
request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def mockstream_runner():
    from mockstream.server import create_app
    from mockstream.server.state import State
    log = options.pop("access_log", False)
    app = create_app(speed=0, **options)
    runner_options = {"access_log": None}
    if log:  # as `mockstream serve` writes it (to this process's stdout, which valgrind's caller drops)
        from mockstream.server.access_log import AccessLog
        access_log = AccessLog()
        State.of(app).journal.listeners.append(access_log.ended)
        runner_options = {"access_log_class": access_log.for_aiohttp()}
    return web.AppRunner(app, **runner_options)


def aiohttp_runner():
    # The least an aiohttp handler can do to stream the same answer (as bench/reference_server.py): the
    # knobs read from the body, pre-encoded chunks of the same shape, one write per event.
    from reference_server import chat
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return web.AppRunner(app, access_log=None)


async def main():
    runner = mockstream_runner() if server == "mockstream" else aiohttp_runner()
    await runner.setup()
    if server == "mockstream":
        try:
            from mockstream.server import route_directly  # as `mockstream serve` does (a build that has it)
        except ImportError:
            pass
        else:
            route_directly(runner)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(count):
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if b"chunked" in head.lower():
            while not (await reader.readuntil(b"\r\n")) == b"0\r\n":
                pass
            await reader.readuntil(b"\r\n")
        else:
            length = int(next(l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")).split(b":")[1])
            await reader.readexactly(length)
    writer.close()
    await runner.cleanup()

asyncio.run(main())
"""


SERVE = {"metrics": True, "access_log": True}  # what `mockstream serve` runs with by default (admin is on too)
HERE = os.path.dirname(os.path.abspath(__file__))


def instructions(count: int, knobs: dict, stream: bool, server: str, options: dict) -> int:
    with tempfile.TemporaryDirectory() as work:
        out = os.path.join(work, "callgrind.out")
        result = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", CLIENT,
             str(count), json.dumps(knobs), "1" if stream else "0", server, json.dumps(options)],
            capture_output=True, text=True, check=True,
            cwd=work,  # not the checkout: the Python's own mockstream
            env={**os.environ, "PYTHONPATH": HERE},  # the reference handler (reference_server.py)
        )
    found = re.search(r"refs:\s+([\d,]+)", result.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{result.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def per_request(knobs: dict, stream: bool, server: str, options: dict) -> int:
    few, many = instructions(FEW, knobs, stream, server, options), instructions(MANY, knobs, stream, server, options)
    return (many - few) // (MANY - FEW)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES, action="append", help="a request shape (default: every one)")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=JSON",
                        help="a create_app option, e.g. admin=false or metrics=true; access_log=true adds serve's log")
    parser.add_argument("--serve", action="store_true", help="as `mockstream serve` runs: metrics and the access log")
    parser.add_argument("--reference", action="store_true",
                        help="also count the minimal aiohttp handler (reference_server.py) and print the ratio")
    args = parser.parse_args()
    options = {**(SERVE if args.serve else {})}
    options.update({name: json.loads(value) for name, value in (o.split("=", 1) for o in args.option)})
    for name in args.shape or list(SHAPES):
        knobs, stream = SHAPES[name]
        count = per_request(knobs, stream, "mockstream", options)
        line: dict = {"shape": name, "options": options, "instructions_per_request": count}
        if args.reference and stream:  # the reference only streams
            reference = per_request(knobs, stream, "aiohttp", {})
            line.update(reference_per_request=reference, ratio=round(count / reference, 2))
        print(json.dumps(line))


if __name__ == "__main__":
    main()
