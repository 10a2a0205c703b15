"""Models served by the backend; :class:`labelhub.backend.models.choices.ChoicesModel` is the default."""
