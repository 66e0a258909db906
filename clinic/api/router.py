"""One router for ``/api/v1/``; each app's ``api`` module registers its viewsets here."""

from __future__ import annotations

from rest_framework.routers import DefaultRouter

router = DefaultRouter()
