"""WSGI entry point for gunicorn: ``gunicorn -c deploy/gunicorn.conf.py services.wsgi:app``.

Imported by each worker after the fork (``preload_app = False``), so every worker builds its
own app and loads its own model from the ``VERSUS_*`` environment.
"""

from services.app import create_app

app = create_app()
