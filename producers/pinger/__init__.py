"""ICMP pinger: sweeps the device inventory, publishes net.ping-results (docs/network.md)."""
