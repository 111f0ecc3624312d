"""fleetq: a queue of agent and build jobs for a small fleet of machines, kept in a git repo."""

__version__ = "0.1.0"
