from django.urls import path, register_converter

from access_app import views
from keys_app.urls import KeyNameConverter  # noqa: F401  (registers <keyname:>)

app_name = "access"


class GuidConverter:
    # Role definition and assignment names are GUIDs; anything else is a 404 before any view.
    regex = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"

    def to_python(self, value):
        return value

    def to_url(self, value):
        return value


register_converter(GuidConverter, "guid")

urlpatterns = [
    path("hsms/<str:hsm_id>/access/", views.HsmAccessView.as_view(), name="hsm-access"),
    path("hsms/<str:hsm_id>/access/refresh/", views.RbacSyncView.as_view(), name="rbac-sync"),
    path("hsms/<str:hsm_id>/access/roles/", views.RoleListView.as_view(), name="role-list"),
    path("hsms/<str:hsm_id>/access/roles/new/", views.RoleCreateView.as_view(),
         name="role-create"),
    path("hsms/<str:hsm_id>/access/roles/<guid:role>/", views.RoleDetailView.as_view(),
         name="role-detail"),
    path("hsms/<str:hsm_id>/access/roles/<guid:role>/delete/", views.RoleDeleteView.as_view(),
         name="role-delete"),
    path("hsms/<str:hsm_id>/access/assignments/<guid:assignment>/",
         views.AssignmentDetailView.as_view(), name="assignment-detail"),
    path("hsms/<str:hsm_id>/access/assignments/<guid:assignment>/revoke/",
         views.AssignmentRevokeView.as_view(), name="assignment-revoke"),
    path("hsms/<str:hsm_id>/access/assignments/<guid:assignment>/adopt/",
         views.AssignmentAdoptView.as_view(), name="assignment-adopt"),
    path("hsms/<str:hsm_id>/keys/<keyname:name>/access/", views.KeyAccessView.as_view(),
         name="key-access"),
    path("access/requests/", views.AccessRequestListView.as_view(), name="request-list"),
    path("access/requests/new/", views.AccessRequestCreateView.as_view(), name="request-create"),
    path("access/requests/<int:access_request_id>/", views.AccessRequestDetailView.as_view(),
         name="request-detail"),
    path("access/reviews/", views.CampaignListView.as_view(), name="campaign-list"),
    path("access/reviews/<int:campaign_id>/", views.CampaignDetailView.as_view(),
         name="campaign-detail"),
    path("access/reviews/<int:campaign_id>/evidence.json", views.CampaignEvidenceView.as_view(),
         name="campaign-evidence"),
    path("access/reviews/items/<int:item_id>/answer/", views.ReviewAnswerView.as_view(),
         name="review-answer"),
]
