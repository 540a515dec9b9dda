"""record_stream's own stack: the recorder, its files, the COS upload and the callback."""
