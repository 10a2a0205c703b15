"""Models served by the backend: :class:`labelhub.backend.models.project.ProjectModel` (the default) and its heads."""
