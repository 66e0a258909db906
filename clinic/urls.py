from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

import clinic.api.views
import patients.api  # noqa: F401 - registers the patients app's viewsets on the router
import protocols.api  # noqa: F401 - each api module registers its viewsets on the router
from clinic import two_factor
from clinic.api.router import router
from clinic.health import healthz
from clinic.set_password import ChoosePasswordView

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("healthz", healthz, name="healthz"),
    path("admin/two-factor/setup/", two_factor.setup, name="two_factor_setup"),
    path("admin/two-factor/verify/", two_factor.verify, name="two_factor_verify"),
    path("admin/set-password/<uidb64>/<token>/", ChoosePasswordView.as_view(), name="staff_set_password"),
    path("admin/", admin.site.urls),
    path("api/v1/me/", clinic.api.views.me, name="api-me"),
    path("api/v1/auth/token/", clinic.api.views.ObtainTokenView.as_view(), name="api-token"),
    path("api/v1/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("protocols.urls")),
    path("", include("patients.urls")),
]

handler400 = "clinic.api.errors.bad_request"
handler403 = "clinic.api.errors.permission_denied"
handler404 = "clinic.api.errors.not_found"
