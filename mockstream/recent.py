"""Recent results of pure steps, by request body: a load test that repeats one body parses and plans it once.

Only steps whose result depends on nothing but their key are kept (parsing a body, what it asks, its
knobs, its Plan), so a hit answers exactly what a miss would. Bounded: the least recently used go first,
and bodies over MAX_BODY bytes are not kept.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

MAX_BODY = 16 * 1024
SIZE = 256


class Recent:
    """A bounded map, least recently used out first."""

    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: Hashable, value: Any) -> Any:
        self._items[key] = value
        if len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def keyable(body: Any) -> bytes | None:
    """The raw body as a key, when it may be kept."""
    return body if type(body) is bytes and len(body) <= MAX_BODY else None
