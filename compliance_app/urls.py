from django.urls import path

from compliance_app import views

app_name = "compliance"

urlpatterns = [
    path("posture/", views.PostureView.as_view(), name="posture"),
    path("evidence/", views.EvidencePackView.as_view(), name="evidence"),
    path("evidence/<int:pack_id>/<str:fmt>/", views.EvidencePackDownloadView.as_view(),
         name="evidence-download"),
]
