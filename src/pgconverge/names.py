"""Names are values: schema.name as one QualifiedName that keys the catalog and the spec, quotes itself for SQL and
displays as schema.name. It is a str, so a key read from the catalog and one built from phases.yml are the same."""

from __future__ import annotations

from psycopg import sql


class QualifiedName(str):
    schema: str
    name: str

    def __new__(cls, schema: str, name: str) -> QualifiedName:
        value = super().__new__(cls, f"{schema}.{name}")
        value.schema, value.name = schema, name
        return value

    @classmethod
    def parse(cls, text: str, default_schema: str = "public") -> QualifiedName:
        """`schema.name`, or a bare name in the default schema (the first dot separates: schemas rarely hold one)."""
        if isinstance(text, QualifiedName):
            return text
        schema, dot, name = text.partition(".")
        return cls(schema, name) if dot else cls(default_schema, text)

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def sibling(self, name: str) -> QualifiedName:
        """Another object in the same schema (a temporary or retired name, a partition's index)."""
        return QualifiedName(self.schema, name)
