"""Alert delivery through apprise: the shell around :mod:`supervisor.core.alerting`.

`Alerter.submit` never blocks and never raises. An alert passes the gate (dedup,
recovery notices), is routed to the channels whose `min_severity` it meets, and waits
`group_wait` in its channel's batch; the batch then joins the channel's queue. One
background task per channel (its pump) delivers the queue in order.

Delivery: one `apprise.Apprise` per channel, `async_notify` inside
`asyncio.timeout(send_timeout)`. A delivery that fails (the result is not a success,
an exception, a timeout) is written to the spool, `SPOOL/<channel>/<sortable>.json`
(temp file, fsync, rename); while a channel has spooled messages, new ones are
spooled behind them, so order is kept. The pump retries with exponential backoff
(`backoff` doubling to `backoff_max`): a lone spooled message as itself, a backlog of
two or more as one digest (`digest.py`: grouped by title, bounded in size), whose files
are removed only once it was delivered; a digest that fails keeps them all. At most
`spool_max` files per channel: the oldest are dropped and the next message sent on
that channel says how many. On start the spool left by an earlier run is retried.

Secrets: apprise URLs hold passwords and tokens. Logs name a channel and its masked
URL (`mask_url`: the scheme only); failure reasons are scrubbed of every part of the
URL; apprise's own logger, which prints URLs, is kept from reaching any handler. Every
title and body is masked (`supervisor.secrets.mask`) before it is queued, spooled or
sent, and each channel's URL is `remember`-ed so it is masked in any output.

Delivery is at least once: a send that times out cannot be stopped inside apprise's
worker thread, and if it completes after the timeout the spooled copy arrives again.
To keep that window small, each plugin's socket timeouts are capped at `send_timeout`.
"""

from supervisor.alerts.alerter import Alerter
from supervisor.alerts.apprise_channel import Delivery
from supervisor.secrets import Redactor

__all__ = ["Alerter", "Delivery", "Redactor"]
