"""A service whose memory grows by 5 MB every 0.3 s up to 300 MB, then stays (Debian's python3)."""

import time

hoard = []
for _ in range(60):
    hoard.append(bytearray(5_000_000))
    time.sleep(0.3)
time.sleep(3600)
