"""Security-domain API routes (included under /api/v1/)."""
from django.urls import path

from dr_app.api import security_domain_views as views

_SD = "hsms/<str:hsm_id>/security-domain/"
_CUSTODIAN = "hsms/<str:hsm_id>/custodians/<int:custodian_id>/"

urlpatterns = [
    path(_SD, views.SecurityDomainApi.as_view(), name="sd-status"),
    path(_SD + "download/", views.SecurityDomainActivateApi.as_view(), name="sd-activate"),
    path(_SD + "download/<int:job_id>/", views.SecurityDomainDownloadApi.as_view(),
         name="sd-download"),
    path(_SD + "init-recovery/", views.SecurityDomainInitRecoveryApi.as_view(),
         name="sd-init-recovery"),
    path(_SD + "upload/", views.SecurityDomainUploadApi.as_view(), name="sd-upload"),
    path(_SD + "quorum/", views.SecurityDomainQuorumApi.as_view(), name="sd-quorum"),
    path("hsms/<str:hsm_id>/custodians/", views.CustodianListApi.as_view(),
         name="sd-custodian-list"),
    path(_CUSTODIAN, views.CustodianDetailApi.as_view(), name="sd-custodian"),
    path(_CUSTODIAN + "retire/", views.CustodianRetireApi.as_view(), name="sd-custodian-retire"),
    path(_CUSTODIAN + "challenges/", views.CustodyChallengeApi.as_view(), name="sd-challenge"),
    path(_CUSTODIAN + "prove/", views.CustodyProveApi.as_view(), name="sd-prove"),
    path("custody-findings/", views.CustodyFindingsApi.as_view(), name="sd-custody-findings"),
]
