"""Models served by the backend; :class:`backend.models.choices.ChoicesModel` is the default."""
