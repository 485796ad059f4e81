"""Process: `mockstream serve | validate | health` (cli), the service (drain on SIGTERM), workers, the
listener, the health check and the garbage-collection policy."""
