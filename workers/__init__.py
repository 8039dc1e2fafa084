"""Everything that runs: django-q2 tasks, the scheduler and the executors (later issues)."""
