"""Follow-up plans, the task queue they generate and the interactions that complete tasks."""
