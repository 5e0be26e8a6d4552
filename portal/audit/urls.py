"""Timeline pages and the chain status (namespace "trail"; the trail itself is "audit")."""
from django.urls import path

import keys_app.urls  # noqa: F401  (registers the keyname converter)

from portal.audit import timeline_views as views

app_name = "trail"
urlpatterns = [
    path("hsms/<str:hsm_id>/timeline/", views.HsmTimelineView.as_view(), name="hsm-timeline"),
    path("hsms/<str:hsm_id>/keys/<keyname:name>/timeline/", views.KeyTimelineView.as_view(),
         name="key-timeline"),
    path("audit/timelines/", views.TimelineIndexView.as_view(), name="timeline-index"),
    path("audit/timelines/export/", views.TimelineExportView.as_view(), name="timeline-export"),
    path("audit/principals/<str:principal>/timeline/", views.PrincipalTimelineView.as_view(),
         name="principal-timeline"),
    path("audit/chain/", views.ChainStatusView.as_view(), name="chain"),
]
