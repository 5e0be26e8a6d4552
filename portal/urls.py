"""URLs: pages by app, the API under /api/v1/, its schema and docs, and /healthz."""
from django.urls import include, path

from portal import views
from portal.accounts.api import views as accounts_api
from portal.audit import views as audit_views
from portal.audit.api import views as audit_api
from portal.gateway import views as gateway_views
from portal.gateway.api import views as gateway_api
from portal.jobs.api import views as jobs_api

audit_patterns = ([
    path("", audit_views.AuditEventListView.as_view(), name="event-list"),
    path("export/", audit_views.AuditEventExportView.as_view(), name="event-export"),
], "audit")

gateway_patterns = ([
    path("", gateway_views.HsmListView.as_view(), name="hsm-list"),
    path("<str:hsm_id>/deregister/", gateway_views.HsmDeregisterView.as_view(),
         name="hsm-deregister"),
    path("<str:hsm_id>/", gateway_views.HsmDetailView.as_view(), name="hsm-detail"),
    path("<str:hsm_id>/settings/", gateway_views.HsmSettingsView.as_view(), name="hsm-settings"),
    path("<str:hsm_id>/jobs/", gateway_views.HsmJobsView.as_view(), name="hsm-jobs"),
    path("<str:hsm_id>/activity/", gateway_views.HsmActivityView.as_view(),
         name="hsm-activity"),
], "gateway")

api_patterns = ([
    path("hsms/", gateway_api.HsmListApi.as_view(), name="hsm-list"),
    path("hsms/<str:hsm_id>/", gateway_api.HsmDetailApi.as_view(), name="hsm-detail"),
    path("jobs/", jobs_api.JobListApi.as_view(), name="job-list"),
    path("jobs/<int:job_id>/", jobs_api.JobDetailApi.as_view(), name="job-detail"),
    path("audit-events/", audit_api.AuditEventListApi.as_view(), name="audit-event-list"),
    path("tokens/", accounts_api.TokenListApi.as_view(), name="token-list"),
    path("tokens/<int:token_id>/", accounts_api.TokenDetailApi.as_view(), name="token-detail"),
    path("", include("portal.approvals.api.urls")),
    path("", include("portal.audit.api.urls")),
    path("", include("keys_app.api.urls")),
    path("", include("access_app.api.urls")),
    path("", include("dr_app.api.urls")),
    path("", include("cmk_app.api.urls")),
    path("", include("compliance_app.api.urls")),
], "api")

urlpatterns = [
    path("", views.DashboardView.as_view(), name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("preferences/table/", views.TablePreferenceView.as_view(), name="table-preference"),
    path("accounts/", include("portal.accounts.urls")),
    path("audit/", include(audit_patterns)),
    path("", include("portal.audit.urls")),  # timelines, chain status (namespace "trail")
    path("hsms/", include(gateway_patterns)),
    path("hsms/<str:hsm_id>/", include("keys_app.urls")),
    path("", include("access_app.urls")),
    path("keys/", include("keys_app.urls_home")),
    path("jobs/", include("portal.jobs.urls")),
    path("approvals/", include("portal.approvals.urls")),
    path("", include("dr_app.urls")),
    path("", include("cmk_app.urls")),
    path("", include("compliance_app.urls")),
    path("api/v1/", include(api_patterns)),
    path("api/schema/", views.ApiSchemaView.as_view(), name="api-schema"),
    path("api/docs/", views.ApiDocsView.as_view(url_name="api-schema"), name="api-docs"),
]

handler400 = "portal.errors.handler400"
handler403 = "portal.errors.handler403"
handler404 = "portal.errors.handler404"
handler500 = "portal.errors.handler500"
