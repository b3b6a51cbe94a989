"""What an environment remembers between commands, in its deploys table: the deploy lock, the deploy
journal and the audit log. Below every operation (deploy, ops, db) that uses them."""
