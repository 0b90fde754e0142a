"""End-to-end tests against real systems; each skips itself when its system is absent."""
