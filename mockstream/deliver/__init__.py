"""Deliver: bytes and time. Frames become socket writes (cutting), each stream is written on absolute
deadlines by one pacer per loop (pacer, stream), faults act on the socket (sockets), and all SSE syntax is
written in one place (sse)."""
