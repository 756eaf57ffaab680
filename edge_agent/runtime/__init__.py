"""Runtime: the supervisor (``Agent``), one poller per machine, and loading the config file."""
