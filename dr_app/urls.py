from django.urls import path

from dr_app import views

app_name = "dr"

urlpatterns = [
    path("backups/", views.BackupHomeView.as_view(), name="backup-home"),
    path("hsms/<str:hsm_id>/backups/", views.BackupListView.as_view(), name="backup-list"),
    path("hsms/<str:hsm_id>/backups/precheck/", views.BackupPrecheckView.as_view(),
         name="backup-precheck"),
    path("hsms/<str:hsm_id>/backups/refresh/", views.BackupRefreshView.as_view(),
         name="backup-refresh"),
    path("hsms/<str:hsm_id>/backups/schedules/", views.ScheduleCreateView.as_view(),
         name="schedule-create"),
    path("hsms/<str:hsm_id>/backups/schedules/<int:schedule_id>/delete/",
         views.ScheduleDeleteView.as_view(), name="schedule-delete"),
    path("hsms/<str:hsm_id>/restore/", views.RestoreView.as_view(), name="restore-create"),
    path("restores/<int:restore_id>/", views.RestoreDetailView.as_view(),
         name="restore-detail"),
    path("dr-drills/", views.DrillListView.as_view(), name="drill-list"),
    path("dr-drills/<int:drill_id>/", views.DrillDetailView.as_view(), name="drill-detail"),
]

from dr_app.security_domain_urls import urlpatterns as sd_urlpatterns  # noqa: E402

urlpatterns += sd_urlpatterns
