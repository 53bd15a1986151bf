"""stealbalancer-agent: per-VM steal from libvirt and /proc, streamed to the coordinator."""

__version__ = "0.1.0"
