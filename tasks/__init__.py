"""Celery: the app, its config, the beat schedule and thin tasks.

``celery -A tasks`` finds the app in ``tasks.celery``. Nothing is imported here, so that the
web can use ``tasks.config`` without building the workers' app from the environment.
"""
