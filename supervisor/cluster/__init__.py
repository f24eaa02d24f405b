"""The shell of cross-host failover: the fence files and units on this host
(`fence.py`), the lease keeper PID 1 runs (`keeper.py`), and the driver that carries the
cluster machines' actions out through etcd and systemd (`driver.py`)."""
