from django.urls import path

import keys_app.urls  # noqa: F401  (registers the keyname converter)

from portal.audit.api import timeline

urlpatterns = [
    path("timeline/hsms/<str:hsm_id>/", timeline.HsmTimelineApi.as_view(), name="timeline-hsm"),
    path("timeline/hsms/<str:hsm_id>/keys/<keyname:name>/", timeline.KeyTimelineApi.as_view(),
         name="timeline-key"),
    path("timeline/principals/<str:principal>/", timeline.PrincipalTimelineApi.as_view(),
         name="timeline-principal"),
    path("audit/chain/", timeline.ChainStatusApi.as_view(), name="audit-chain"),
    path("audit/chain/verify/", timeline.ChainVerifyApi.as_view(), name="audit-chain-verify"),
]
