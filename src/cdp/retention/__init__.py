"""Retention (PIPL art. 19): how long each purpose keeps each class of data, legal holds, and
the runs that delete or anonymise what has expired."""
