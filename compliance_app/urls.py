from django.urls import path

from compliance_app import views

app_name = "compliance"

# Included at "" in portal/urls.py: full paths, so the HSM tab sits under hsms/<hsm>/.
urlpatterns = [
    path("compliance/posture/", views.PostureView.as_view(), name="posture"),
    path("compliance/evidence/", views.EvidencePackView.as_view(), name="evidence"),
    path("compliance/evidence/<int:pack_id>/<str:fmt>/", views.EvidencePackDownloadView.as_view(),
         name="evidence-download"),
    path("hsms/<str:hsm_id>/posture/", views.HsmPostureView.as_view(), name="hsm-posture"),
]
