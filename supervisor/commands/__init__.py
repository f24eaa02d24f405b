"""One-shot commands apart from the daemon: validate, check, man pages, the socket client.

Nothing is imported here: `supervisor.cli` imports each command lazily, so the CLI
starts fast and a command pulls in only what it needs.
"""
