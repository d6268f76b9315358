"""``fastsam serve``: an HTTP API and a web page that segment an image once and answer prompts from the cache.

``create_app(backend, settings, text_model)`` builds the FastAPI application (see :mod:`fastsam.serve.app`);
``ServeSettings`` holds its limits. FastAPI and uvicorn come with ``pip install "fastsam-torch[serve]"``.
"""

from fastsam.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]


def __getattr__(name: str):
    # Importing the package (for the CLI's argument parser) must not need FastAPI.
    if name == "create_app":
        from fastsam.serve.app import create_app

        return create_app
    raise AttributeError(name)
