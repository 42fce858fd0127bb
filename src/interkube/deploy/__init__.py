"""Deploying interkube into clusters: ``interkube render`` (manifests) and what it reads.

``render.render_server(options)`` gives the objects as dicts; ``output.write_manifests`` writes
them as a kustomize directory or one YAML stream. See docs/deploy.md.
"""
