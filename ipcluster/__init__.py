"""ipcluster."""
