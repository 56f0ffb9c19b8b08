"""One monitor per container (layer L4): owns its pipes or pty, writes its log, records its exit, runs ``--rm``."""
