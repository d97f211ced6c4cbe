"""Database: SQLModel tables, engine and writer, Alembic migrations."""
