"""Security-domain pages (included into dr_app's "dr" namespace)."""
from django.urls import path

from dr_app import security_domain_views as views

_SD = "hsms/<str:hsm_id>/security-domain/"
_CUSTODIAN = _SD + "custodians/<int:custodian_id>/"

urlpatterns = [
    path("security-domain/", views.SdHomeView.as_view(), name="sd-home"),
    path(_SD, views.SdOverviewView.as_view(), name="sd-overview"),
    path(_SD + "activate/", views.SdActivateView.as_view(), name="sd-activate"),
    path(_SD + "activate/<int:job_id>/download/", views.SdDownloadView.as_view(),
         name="sd-download"),
    path(_SD + "recover/", views.SdRecoverView.as_view(), name="sd-recover"),
    path(_SD + "recover/exchange-key/", views.SdExchangeKeyView.as_view(),
         name="sd-exchange-key"),
    path(_SD + "recover/upload/", views.SdUploadView.as_view(), name="sd-upload"),
    path(_SD + "quorum/", views.SdQuorumView.as_view(), name="sd-quorum"),
    path(_SD + "custodians/add/", views.SdCustodianAddView.as_view(),
         name="sd-custodian-add"),
    path(_CUSTODIAN, views.SdCustodianView.as_view(), name="sd-custodian"),
    path(_CUSTODIAN + "challenge/", views.SdChallengeView.as_view(), name="sd-challenge"),
    path(_CUSTODIAN + "prove/", views.SdProveView.as_view(), name="sd-prove"),
    path(_CUSTODIAN + "retire/", views.SdCustodianRetireView.as_view(),
         name="sd-custodian-retire"),
]
