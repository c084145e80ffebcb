"""DynamoDB recovery for ActingWeb deployments.

A point-in-time restore always makes a new table, one table at a time, and leaves behind what
AWS does not restore: TTL, point-in-time recovery, tags, streams, deletion protection, auto
scaling. This package restores a deployment's tables to one instant under a new prefix, puts
those settings back from the source tables, and compares every setting afterwards. One module
per concern:

- :mod:`.plan`: what to restore, from where, to which one instant; read-only, and it refuses
  (a target exists, no common instant, an unknown backup) before anything is created;
- :mod:`.snapshot`: a table's settings as AWS reports them;
- :mod:`.autoscaling`: a table's Application Auto Scaling targets and policies;
- :mod:`.apply`: re-applying a source's settings onto a restored table;
- :mod:`.compare`: the settings of two tables, side by side;
- :mod:`.restore`: the restores started in parallel, awaited, then re-applied and compared;
- :mod:`.listing`: restore points: PITR windows and on-demand backups;
- :mod:`.pins`: pinned backups, which ``dynamodb-backup``'s retention never deletes.

Every module imports botocore lazily, so ``awops --help`` stays cheap.
"""
