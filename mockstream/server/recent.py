"""Recent results of pure steps, by request body: a load test that repeats one body parses, plans and encodes
it once. A trick kept for speed (28 % fewer instructions per request, measured when it came), in its own room.

Only steps whose result depends on nothing but their key are kept (parsing a body, what it asks, its
knobs, its Plan, the writes and the headers that deliver the Plan), so a hit answers exactly what a miss would. Bounded:
the least recently used go first, bodies over MAX_BODY bytes are not kept, and only short answers keep
their writes.
"""

from __future__ import annotations

import copy
import itertools
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar

MAX_BODY = 16 * 1024
SIZE = 256
REPLAYS = 16  # plans whose writes are kept
MAX_REPLAY_TOKENS = 4096  # longer answers are encoded for each stream (a replay keeps ~0.4 KiB per token)
REPLAY_TOKENS = 16384  # tokens the kept replays hold together at most (~6.5 MiB): the oldest go first

T = TypeVar("T")
W = TypeVar("W")


class Recent:
    """A bounded map, least recently used out first; and the writes of the plans streamed last."""

    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._replays: OrderedDict[int, tuple[Any, Iterator, int]] = OrderedDict()  # (plan, writes, tokens)
        self._replay_tokens = 0
        self._headers: OrderedDict[int, tuple[Any, dict[str, str]]] = OrderedDict()

    def cached(self, key: Hashable | None, compute: Callable[[], T]) -> T:
        """`compute()`, or what it returned for `key` recently. A None key (a body too large to keep) is
        computed every time. `compute` must depend on nothing but the key."""
        if key is None:
            return compute()
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
            return value
        value = compute()
        self._items[key] = value
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

    def replay(self, plan: object, encode: Callable[[], Iterator[W]], tokens: int = 0) -> Iterator[W]:
        """The writes of `plan` (an answer of `tokens` tokens), encoded by the first stream that reads them and
        replayed to the others.

        Each stream reads its own copy of one `itertools.tee`; the kept copy never advances, so it holds
        every write encoded so far. Keyed by the plan object (the cached steps hand out the same one for
        the same request), which the entry keeps alive so its id cannot be reused."""
        replays = self._replays
        kept = replays.get(id(plan))
        if kept is None or kept[0] is not plan:
            if kept is not None:  # a plan gone, whose id the new one reuses
                self._replay_tokens -= kept[2]
            kept = replays[id(plan)] = (plan, itertools.tee(encode(), 1)[0], tokens)
            self._replay_tokens += tokens
            while len(replays) > REPLAYS or (self._replay_tokens > REPLAY_TOKENS and len(replays) > 1):
                self._replay_tokens -= replays.popitem(last=False)[1][2]
        else:
            replays.move_to_end(id(plan))
        return copy.copy(kept[1])

    def headers(self, plan: object, build: Callable[[], dict[str, str]]) -> dict[str, str]:
        """The response headers of `plan`, built once for the plans streamed last: a plan's headers are its
        own (the dialect spells them from it alone), and the response copies them. Keyed as `replay` is."""
        kept = self._headers.get(id(plan))
        if kept is None or kept[0] is not plan:
            kept = self._headers[id(plan)] = (plan, build())
            if len(self._headers) > REPLAYS:
                self._headers.popitem(last=False)
        return kept[1]

    def clear(self) -> None:
        self._items.clear()
        self._replays.clear()
        self._replay_tokens = 0
        self._headers.clear()

    def __len__(self) -> int:
        return len(self._items)


def keyable(body: Any) -> bytes | None:
    """The raw body as a key, when it may be kept."""
    return body if type(body) is bytes and len(body) <= MAX_BODY else None
