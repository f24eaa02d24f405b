"""One-shot commands apart from the daemon: validate, check, config show, man pages, and
the commands that talk to the daemon (status, history, the acting verbs) with their
rendering and the socket client.

Nothing is imported here: `supervisor.cli` imports each command lazily, so the CLI
starts fast and a command pulls in only what it needs.
"""
