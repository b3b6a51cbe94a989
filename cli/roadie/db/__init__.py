"""`roadie db`: the database tier's runbooks over Patroni (status, switchover)."""
