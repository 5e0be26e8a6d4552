from django.urls import path

from portal.approvals.api import views

urlpatterns = [
    path("approvals/", views.ApprovalListApi.as_view(), name="approval-list"),
    path("approvals/<int:approval_id>/", views.ApprovalDetailApi.as_view(),
         name="approval-detail"),
    path("approvals/<int:approval_id>/approve/", views.ApprovalApproveApi.as_view(),
         name="approval-approve"),
    path("approvals/<int:approval_id>/deny/", views.ApprovalDenyApi.as_view(),
         name="approval-deny"),
    path("approvals/<int:approval_id>/cancel/", views.ApprovalCancelApi.as_view(),
         name="approval-cancel"),
]
