"""The FastAPI web app: ``/predict`` JSON API and the server-rendered upload page."""
