"""Models in S3-compatible object storage: where a version's objects live and when it counts as complete
(``layout``), how an ``s3://bucket/prefix`` URL and the AWS settings become a client (``url``, ``client``).

Shared by the exporter (which publishes) and the sync sidecar (which mirrors complete versions to a local
folder for TF Serving); nothing here imports TensorFlow.
"""
