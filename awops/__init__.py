"""awops: the operations daemon for ActingWeb deployments on PostgreSQL and DynamoDB."""

__version__ = "0.1.0"
