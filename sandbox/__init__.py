"""sbx: a rootless, daemonless, Docker-compatible sandbox runner."""

__version__ = "0.1.0"
