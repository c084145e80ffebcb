"""Jobs that change things: purges and backups. Each module registers its job."""
