"""The poolops inference service: FastAPI + ONNX Runtime (no torch in this process).

``poolops_service.app.create_app(settings)`` builds the app; ``poolops serve`` runs it.
"""
