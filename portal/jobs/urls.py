from django.urls import path

from portal.jobs import views

app_name = "jobs"
urlpatterns = [
    path("", views.JobListView.as_view(), name="job-list"),
    path("<int:job_id>/", views.JobDetailView.as_view(), name="job-detail"),
]
