from django.urls import path

from access_app.api import views
from access_app.urls import GuidConverter  # noqa: F401  (registers <guid:>)
from keys_app.urls import KeyNameConverter  # noqa: F401  (registers <keyname:>)

urlpatterns = [
    path("hsms/<str:hsm_id>/role-definitions/", views.RoleDefinitionListApi.as_view(),
         name="role-definition-list"),
    path("hsms/<str:hsm_id>/role-definitions/<guid:role>/", views.RoleDefinitionDetailApi.as_view(),
         name="role-definition-detail"),
    path("hsms/<str:hsm_id>/role-assignments/", views.RoleAssignmentListApi.as_view(),
         name="role-assignment-list"),
    path("hsms/<str:hsm_id>/role-assignments/sync/", views.RoleAssignmentSyncApi.as_view(),
         name="role-assignment-sync"),
    path("hsms/<str:hsm_id>/role-assignments/<guid:assignment>/",
         views.RoleAssignmentDetailApi.as_view(), name="role-assignment-detail"),
    path("hsms/<str:hsm_id>/role-assignments/<guid:assignment>/adopt/",
         views.RoleAssignmentAdoptApi.as_view(), name="role-assignment-adopt"),
    path("hsms/<str:hsm_id>/keys/<keyname:name>/effective-access/",
         views.EffectiveAccessApi.as_view(), name="key-effective-access"),
    path("access-requests/", views.AccessRequestListApi.as_view(), name="access-request-list"),
    path("access-requests/<int:access_request_id>/", views.AccessRequestDetailApi.as_view(),
         name="access-request-detail"),
    path("access-reviews/", views.CampaignListApi.as_view(), name="access-review-list"),
    path("access-reviews/<int:campaign_id>/", views.CampaignDetailApi.as_view(),
         name="access-review-detail"),
    path("access-reviews/items/<int:item_id>/answer/", views.ReviewAnswerApi.as_view(),
         name="access-review-answer"),
]
