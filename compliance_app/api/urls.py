from django.urls import path

from compliance_app.api import views

urlpatterns = [
    path("posture/", views.PostureApi.as_view(), name="posture"),
    path("posture/runs/", views.PostureRunListApi.as_view(), name="posture-run-list"),
    path("posture/runs/<int:run_id>/", views.PostureRunDetailApi.as_view(), name="posture-run-detail"),
    path("evidence-packs/", views.EvidencePackListApi.as_view(), name="evidence-pack-list"),
    path("evidence-packs/<int:pack_id>/", views.EvidencePackDetailApi.as_view(),
         name="evidence-pack-detail"),
    path("evidence-packs/<int:pack_id>/<str:fmt>/", views.EvidencePackDownloadApi.as_view(),
         name="evidence-pack-download"),
]
