"""Model versions as OCI images, written and pushed without a container daemon (pure Python).

``layout`` builds the image (reproducible layers, config, manifest), ``modelcar`` is the one tiny program in
it, ``reference`` parses image references, ``registry`` pushes over the OCI distribution API and
``modelimage`` puts a model folder's versions into an image.
"""
