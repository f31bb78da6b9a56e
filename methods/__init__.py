"""Built-in method plugins, installed as ``mtp_bench.methods`` (one file per method, found via entry points)."""
