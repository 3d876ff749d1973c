"""Storage: SQLAlchemy models, database set-up (SQLite, PostgreSQL) and migrations."""
