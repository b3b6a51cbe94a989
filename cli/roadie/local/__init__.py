"""The local fleet: nspawn hosts on network namespaces, the apt cache and moto."""
