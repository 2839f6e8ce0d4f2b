"""Hardware backends that turn a checked QGraph into an accelerator."""
