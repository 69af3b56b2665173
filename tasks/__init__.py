"""Celery: the app, its config, the beat schedule and thin tasks.

``celery -A tasks`` finds the app in ``tasks.celery``; ``tasks.names`` spells every task and
queue; ``tasks.factory`` builds an app from the settings. Nothing is imported here, so that
the web can build its own app without the workers' one being built from the environment.
"""
