"""The roadie Pulumi program: components for network, security, storage and compute."""
