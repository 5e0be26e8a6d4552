from django.urls import path

from keys_app.api import views
from keys_app.urls import KeyNameConverter  # noqa: F401  (registers <keyname:>)

urlpatterns = [
    path("hsms/<str:hsm_id>/keys/", views.KeyListApi.as_view(), name="key-list"),
    path("hsms/<str:hsm_id>/keys/restore/", views.KeyRestoreApi.as_view(), name="key-restore"),
    path("hsms/<str:hsm_id>/keys/sync/", views.KeySyncApi.as_view(), name="key-sync"),
    path("hsms/<str:hsm_id>/keys/standards-report/", views.KeyStandardsReportApi.as_view(),
         name="key-standards-report"),
    path("hsms/<str:hsm_id>/keys/<keyname:name>/", views.KeyDetailApi.as_view(), name="key-detail"),
    path("hsms/<str:hsm_id>/keys/<keyname:name>/versions/", views.KeyVersionsApi.as_view(),
         name="key-versions"),
    path("hsms/<str:hsm_id>/keys/<keyname:name>/rotate/", views.KeyRotateApi.as_view(),
         name="key-rotate"),
    path("hsms/<str:hsm_id>/keys/<keyname:name>/rotation-policy/",
         views.KeyRotationPolicyApi.as_view(), name="key-rotation-policy"),
    path("hsms/<str:hsm_id>/keys/<keyname:name>/backup/", views.KeyBackupApi.as_view(),
         name="key-backup"),
    path("hsms/<str:hsm_id>/keys/<keyname:name>/public-key/", views.KeyPublicApi.as_view(),
         name="key-public"),
    path("hsms/<str:hsm_id>/deleted-keys/", views.DeletedKeyListApi.as_view(), name="deleted-list"),
    path("hsms/<str:hsm_id>/deleted-keys/<keyname:name>/recover/", views.KeyRecoverApi.as_view(),
         name="key-recover"),
    path("hsms/<str:hsm_id>/deleted-keys/<keyname:name>/purge/", views.KeyPurgeApi.as_view(),
         name="key-purge"),
]
