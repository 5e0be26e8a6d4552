from django.urls import path

from cmk_app.api import views

urlpatterns = [
    path("cmk-bindings/", views.CmkBindingListApi.as_view(), name="api-cmk-binding-list"),
    path("cmk-bindings/<int:binding_id>/", views.CmkBindingDetailApi.as_view(),
         name="api-cmk-binding-detail"),
    path("cmk-bindings/<int:binding_id>/detach/", views.CmkBindingDetachApi.as_view(),
         name="api-cmk-binding-detach"),
    path("hsms/<str:hsm_id>/resource/", views.HsmResourceApi.as_view(), name="api-hsm-resource"),
    path("hsms/<str:hsm_id>/resource/purge-protection/", views.HsmPurgeProtectionApi.as_view(),
         name="api-hsm-purge-protection"),
    path("hsms/<str:hsm_id>/resource/private-endpoint-connections/<str:name>/",
         views.HsmPrivateEndpointApi.as_view(), name="api-hsm-private-endpoint"),
    path("hsms/<str:hsm_id>/resource/replicas/", views.HsmReplicaListApi.as_view(),
         name="api-hsm-replica-list"),
    path("hsms/<str:hsm_id>/resource/replicas/<str:region>/", views.HsmReplicaDetailApi.as_view(),
         name="api-hsm-replica-detail"),
]
