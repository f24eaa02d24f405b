"""What the cluster tests run in their lab of hosts: the witness and its client."""
