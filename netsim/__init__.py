"""netsim: a Kubernetes network dataplane emulator."""

__version__ = "0.1.0"
