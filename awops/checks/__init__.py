"""Read-only checks of PostgreSQL and DynamoDB. Each module registers its check."""
