"""Instructions per request, counted by valgrind (callgrind): the number that does not move with machine noise.

    python bench/instructions.py                      # every shape, this checkout
    python bench/instructions.py --shape stream-10 --option admin=false

The server and a raw-socket client run in one process on the standard event loop: N requests on one keep-alive
connection, counted twice (FEW and MANY requests), so what starting Python and the server costs cancels out and
(MANY - FEW) / (MANY - FEW requests) is what one more request costs, client included (the client is the same for
every build). Needs `valgrind` (Debian: `apt-get install valgrind`). A run takes about a minute per shape.
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
from mockstream.server import create_app

count, knobs, stream, options = int(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3] == "1", json.loads(sys.argv[4])
body = json.dumps({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": "hi"}],
                   "mockstream": knobs}).encode()
request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


async def main():
    runner = web.AppRunner(create_app(speed=0, **options), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
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


def instructions(count: int, knobs: dict, stream: bool, options: dict) -> int:
    with tempfile.TemporaryDirectory() as work:
        out = os.path.join(work, "callgrind.out")
        result = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-c", CLIENT,
             str(count), json.dumps(knobs), "1" if stream else "0", json.dumps(options)],
            capture_output=True, text=True, check=True, cwd=work,  # not the checkout: the Python's own mockstream
        )
    found = re.search(r"refs:\s+([\d,]+)", result.stderr)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{result.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=SHAPES, action="append", help="a request shape (default: every one)")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=JSON",
                        help="a create_app option, e.g. admin=false or metrics=true")
    args = parser.parse_args()
    options = {name: json.loads(value) for name, value in (o.split("=", 1) for o in args.option)}
    for name in args.shape or list(SHAPES):
        knobs, stream = SHAPES[name]
        few, many = instructions(FEW, knobs, stream, options), instructions(MANY, knobs, stream, options)
        print(json.dumps({"shape": name, "options": options, "instructions_per_request": (many - few) // (MANY - FEW)}))


if __name__ == "__main__":
    main()
