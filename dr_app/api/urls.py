from django.urls import path

from dr_app.api import views

urlpatterns = [
    path("hsms/<str:hsm_id>/backups/", views.BackupListApi.as_view(), name="backup-list"),
    path("hsms/<str:hsm_id>/backups/refresh/", views.BackupCatalogRefreshApi.as_view(),
         name="backup-refresh"),
    path("hsms/<str:hsm_id>/backups/precheck/", views.PreBackupCheckApi.as_view(),
         name="backup-precheck"),
    path("hsms/<str:hsm_id>/backup-schedules/", views.ScheduleListApi.as_view(),
         name="backup-schedule-list"),
    path("hsms/<str:hsm_id>/backup-schedules/<int:schedule_id>/",
         views.ScheduleDetailApi.as_view(), name="backup-schedule-detail"),
    path("hsms/<str:hsm_id>/restores/", views.RestoreStartApi.as_view(), name="restore-create"),
    path("hsms/<str:hsm_id>/restores/precheck/", views.PreRestoreCheckApi.as_view(),
         name="restore-precheck"),
    path("dr-drills/", views.DrillListApi.as_view(), name="drill-list"),
    path("dr-drills/<int:drill_id>/", views.DrillDetailApi.as_view(), name="drill-detail"),
]

from dr_app.api.security_domain_urls import urlpatterns as sd_urlpatterns  # noqa: E402

urlpatterns += sd_urlpatterns
