"""The pure core: every decision as a function of (state, event, now).

Nothing here does I/O, reads a clock or touches asyncio: the shell (`daemon/`)
feeds events in and carries the returned actions out.
"""
