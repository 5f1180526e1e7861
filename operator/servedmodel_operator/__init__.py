"""servedmodel-operator: serves TensorFlow SavedModels on Kubernetes with TensorFlow Serving."""

__version__ = "0.1.0"
