"""Turn Keras models or SavedModels into verified, versioned SavedModels that TF Serving can pick up.

Versions are published atomically under ``<base>/<model>/<version>/``: TF Serving only ever sees complete
version folders (see ``publish``), and every version is checked before it becomes visible (see ``verify``).
"""

__version__ = "0.1.0"
