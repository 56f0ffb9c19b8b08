"""The command line (layer L6): the only code that prints or picks an exit code."""
