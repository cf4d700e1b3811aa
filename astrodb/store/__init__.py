"""The store: engines, schema, migrations and the :class:`Store` facade."""
