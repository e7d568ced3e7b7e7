"""One Flask + gunicorn inference service, four runtimes (torch, tensorflow, jax, onnx).

``services.app.create_app`` is the app factory; ``services.predictors`` holds the only
framework-specific code; ``python -m services --framework torch --model models/dr/torch/1``
serves a model under gunicorn with ``deploy/gunicorn.conf.py``.
"""
