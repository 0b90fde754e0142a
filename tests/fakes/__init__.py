"""In-process stand-ins for the real systems the project talks to."""
