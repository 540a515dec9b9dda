"""Stand-ins for parts that cannot run here (Tencent's `liteav` SDK talks to Tencent's servers)."""
