"""Release artifacts: build, verify, publish, and install on hosts."""
