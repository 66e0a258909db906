"""Patient-facing pages (signed links opened from emails, on a phone, with no login) and staff photo downloads."""

from __future__ import annotations

from django.urls import path

from patients import photos
from patients.views import links

app_name = "patients"
urlpatterns = [
    path("p/<str:token>/", links.link, name="link"),
    # Outcome photos: staff of the photo's clinic only (404 for everyone else), every access logged.
    path("staff/photos/<int:photo_id>/", photos.download_photo, name="photo-download"),
    path("staff/photos/<int:photo_id>/thumbnail/", photos.photo_thumbnail, name="photo-thumbnail"),
]
