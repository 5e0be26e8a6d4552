from django.urls import path

from portal.approvals import views

app_name = "approvals"
urlpatterns = [
    path("", views.ApprovalInboxView.as_view(), name="inbox"),
    path("mine/", views.ApprovalMineView.as_view(), name="mine"),
    path("all/", views.ApprovalListView.as_view(), name="request-list"),
    path("policies/", views.ApprovalPolicyListView.as_view(), name="policy-list"),
    path("<int:approval_id>/", views.ApprovalDetailView.as_view(), name="request-detail"),
    path("<int:approval_id>/decide/", views.ApprovalDecideView.as_view(), name="request-decide"),
    path("<int:approval_id>/cancel/", views.ApprovalCancelView.as_view(), name="request-cancel"),
]
