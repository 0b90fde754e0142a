"""The manager: mints credentials and tenant records over HTTP, nothing else."""
