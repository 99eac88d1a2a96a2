"""One parser per profile table: ``Section`` in, frozen dataclass out."""
