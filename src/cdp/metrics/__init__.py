"""Customer, feedback and follow-up metrics; every cell is k-anonymous."""
