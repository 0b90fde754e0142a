"""The `zero-emqx` command: the composition root, the only code that imports both apps."""
