"""`imagefit tune`: an Optuna study over recipes (SQLite by default, PostgreSQL for many workers)."""
