"""push_stream's own stack: the push loop, where it starts, and its Redis checkpoint."""
