"""Alembic environment: Lotkeeper passes an open connection in
``config.attributes["connection"]``; batch mode keeps SQLite ALTERs working."""

from alembic import context

from core.storage.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `lotkeeper db upgrade`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
