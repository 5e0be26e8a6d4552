from django.urls import path, register_converter

from keys_app import views

app_name = "keys"


class KeyNameConverter:
    # What the service allows in key names; anything else is a 404 before any view runs.
    regex = r"[0-9A-Za-z-]{1,127}"

    def to_python(self, value):
        return value

    def to_url(self, value):
        return value


register_converter(KeyNameConverter, "keyname")


class KeyVersionConverter(KeyNameConverter):
    # A key version id: 32 hex digits in Managed HSM; anything but letters and digits is a 404.
    regex = r"[0-9A-Za-z]{1,64}"


register_converter(KeyVersionConverter, "keyversion")

urlpatterns = [
    path("keys/", views.KeyListView.as_view(), name="key-list"),
    path("keys/new/", views.KeyCreateView.as_view(), name="key-create"),
    path("keys/import/", views.KeyImportView.as_view(), name="key-import"),
    path("keys/restore/", views.KeyRestoreView.as_view(), name="key-restore"),
    path("keys/refresh/", views.KeySyncView.as_view(), name="key-sync"),
    path("keys/<keyname:name>/", views.KeyDetailView.as_view(), name="key-detail"),
    path("keys/<keyname:name>/versions/", views.KeyVersionsView.as_view(), name="key-versions"),
    path("keys/<keyname:name>/rotation/", views.KeyRotationView.as_view(), name="key-rotation"),
    path("keys/<keyname:name>/activity/", views.KeyActivityView.as_view(), name="key-activity"),
    path("keys/<keyname:name>/update/", views.KeyUpdateView.as_view(), name="key-update"),
    path("keys/<keyname:name>/enable/", views.KeyEnableView.as_view(), name="key-enable"),
    path("keys/<keyname:name>/disable/", views.KeyDisableView.as_view(), name="key-disable"),
    path("keys/<keyname:name>/versions/<keyversion:version>/public.<str:fmt>",
         views.KeyPublicView.as_view(), name="key-version-public"),
    path("keys/<keyname:name>/versions/<keyversion:version>/enable/",
         views.KeyVersionEnableView.as_view(), name="key-version-enable"),
    path("keys/<keyname:name>/versions/<keyversion:version>/disable/",
         views.KeyVersionDisableView.as_view(), name="key-version-disable"),
    path("keys/<keyname:name>/rotate/", views.KeyRotateView.as_view(), name="key-rotate"),
    path("keys/<keyname:name>/rotation-policy/", views.KeyRotationPolicyView.as_view(),
         name="key-rotation-policy"),
    path("keys/<keyname:name>/backup/", views.KeyBackupView.as_view(), name="key-backup"),
    path("keys/<keyname:name>/public.<str:fmt>", views.KeyPublicView.as_view(), name="key-public"),
    path("keys/<keyname:name>/delete/", views.KeyDeleteView.as_view(), name="key-delete"),
    path("deleted-keys/", views.DeletedKeyListView.as_view(), name="deleted-list"),
    path("deleted-keys/<keyname:name>/recover/", views.KeyRecoverView.as_view(), name="key-recover"),
    path("deleted-keys/<keyname:name>/purge/", views.KeyPurgeView.as_view(), name="key-purge"),
]
